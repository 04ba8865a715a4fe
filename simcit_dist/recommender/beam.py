"""Beam search over SID positions, optionally constrained by the prefix trie of valid SIDs.

Every step is batched over (users x beams): one decoder call, one (B, W, K_d) score tensor,
one ``topk``. The decoder's view of each user's history (cross-attention keys and values) is
computed once per search and shared by all of that user's beams, and each beam's decoded positions
are cached (self-attention keys and values, reordered with the beams), so a step decodes one position. With ``constrained=True`` codes that do not extend a valid SID get -inf before
the ``topk``, so the result never holds an invalid SID; beams are distinct paths, so never a
duplicate one either. A beam's score is the sum of per-position log-probs (each a softmax over
that position's codes, as in training). When fewer than ``beam_size`` valid SIDs exist the
extra beams come back with ``valid=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from simcit_dist.recommender.catalog import BOS, SidLayout
from simcit_dist.recommender.trie import SidTrie


class Seq2SeqScorer(Protocol):
    """What beam search needs from a model (TigerModel, or a test double)."""

    layout: SidLayout

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decoder_memory(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> Any:
        """Per-user state the decoder reads at every step (computed once per search)."""
        ...

    def beam_logprobs(self, tokens: torch.Tensor, memory: Any) -> tuple[torch.Tensor, Any]:
        """(B, W, t) decoder tokens -> (B, W, K) log-probs of the next position's codes, and the state
        with this step cached."""
        ...

    def reorder_memory(self, memory: Any, beam: torch.Tensor) -> Any:
        """The state of the beams ``beam`` (B, W') kept after a step's ``topk``."""
        ...


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
    memory = model.decoder_memory(*model.encode(src))  # once per search, never repeated per beam
    b = src.shape[0]
    tokens = torch.full((b, 1, 1), BOS, dtype=torch.long, device=src.device)  # (B, W_t, t) decoder input
    codes = torch.zeros((b, 1, 0), dtype=torch.long, device=src.device)  # (B, W_t, t) chosen codes
    scores = torch.zeros((b, 1), device=src.device)
    trie_device = trie.device if trie is not None else src.device
    nodes = torch.zeros((b, 1), dtype=torch.long, device=trie_device)  # trie node of each beam
    for depth, size in enumerate(layout.level_sizes):
        width = tokens.shape[1]
        logp, memory = model.beam_logprobs(tokens, memory)  # (B, W_t, K_d)
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
        memory = model.reorder_memory(memory, beam)
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
