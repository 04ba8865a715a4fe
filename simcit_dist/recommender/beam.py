"""Beam search over SID positions, optionally constrained by the prefix trie of valid SIDs.

Every step is batched over (users x beams): one decoder call, one (B, W, K_d) score tensor,
one ``topk``. With ``constrained=True`` codes that do not extend a valid SID get -inf before
the ``topk``, so the result never holds an invalid SID; beams are distinct paths, so never a
duplicate one either. A beam's score is the sum of per-position log-probs (each a softmax over
that position's codes, as in training). When fewer than ``beam_size`` valid SIDs exist the
extra beams come back with ``valid=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from simcit_dist.recommender.catalog import BOS, SidLayout
from simcit_dist.recommender.trie import SidTrie


class Seq2SeqScorer(Protocol):
    """What beam search needs from a model (TigerModel, or a test double)."""

    layout: SidLayout

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def next_logprobs(self, tgt_in: torch.Tensor, memory: torch.Tensor,
                      memory_mask: torch.Tensor) -> torch.Tensor: ...


@dataclass
class BeamResult:
    codes: torch.Tensor  # (B, W, D) local codes, best first
    scores: torch.Tensor  # (B, W) summed log-probs (-inf where not valid)
    valid: torch.Tensor  # (B, W) bool


def _gather(x: torch.Tensor, beam: torch.Tensor) -> torch.Tensor:
    """x: (B, W, ...) -> rows picked by beam: (B, W', ...)."""
    index = beam.view(*beam.shape, *([1] * (x.dim() - 2))).expand(*beam.shape, *x.shape[2:])
    return torch.gather(x, 1, index)


@torch.no_grad()
def beam_search(model: Seq2SeqScorer, src: torch.Tensor, beam_size: int, trie: SidTrie | None = None,
                constrained: bool = True) -> BeamResult:
    """Top-``beam_size`` SIDs for each history in ``src`` (B, S)."""
    if constrained and trie is None:
        raise ValueError("constrained beam search needs the SID trie")
    layout = model.layout
    memory, memory_mask = model.encode(src)  # (B, S, d), (B, S)
    b = src.shape[0]
    tokens = torch.full((b, 1, 1), BOS, dtype=torch.long, device=src.device)  # (B, W_t, t) decoder input
    codes = torch.zeros((b, 1, 0), dtype=torch.long, device=src.device)  # (B, W_t, t) chosen codes
    scores = torch.zeros((b, 1), device=src.device)
    trie_device = trie.device if trie is not None else src.device
    nodes = torch.zeros((b, 1), dtype=torch.long, device=trie_device)  # trie node of each beam
    mem, mem_mask = memory, memory_mask
    for depth, size in enumerate(layout.level_sizes):
        width = tokens.shape[1]
        if mem.shape[0] != b * width:  # the beam widened: repeat each user's memory per beam
            mem, mem_mask = memory.repeat_interleave(width, 0), memory_mask.repeat_interleave(width, 0)
        logp = model.next_logprobs(tokens.view(b * width, -1), mem, mem_mask).view(b, width, size)
        cand = scores.unsqueeze(-1) + logp  # (B, W_t, K_d)
        if constrained:
            assert trie is not None
            alive = torch.isfinite(scores).to(trie_device)
            allowed = trie.allowed_mask(depth, torch.where(alive, nodes, 0).view(-1)).view(b, width, size)
            allowed &= alive.unsqueeze(-1)
            cand = cand.masked_fill(~allowed.to(cand.device), float("-inf"))
        k = min(beam_size, width * size)
        scores, flat = cand.view(b, -1).topk(k, dim=1)  # (B, k)
        beam, code = flat // size, flat % size
        codes = torch.cat([_gather(codes, beam), code.unsqueeze(-1)], dim=2)
        tokens = torch.cat([_gather(tokens, beam), (code + layout.level_offsets[depth]).unsqueeze(-1)], dim=2)
        if constrained:
            assert trie is not None
            parent = torch.gather(nodes, 1, beam.to(trie_device))
            nodes = trie.step(depth, parent.view(-1), code.to(trie_device).view(-1)).view(b, k)
    if scores.shape[1] < beam_size:  # fewer candidates than beams at the last step (tiny vocabularies)
        pad = beam_size - scores.shape[1]
        scores = torch.cat([scores, scores.new_full((b, pad), float("-inf"))], dim=1)
        codes = torch.cat([codes, codes.new_zeros((b, pad, codes.shape[2]))], dim=1)
    return BeamResult(codes=codes, scores=scores, valid=torch.isfinite(scores))
