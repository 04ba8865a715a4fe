"""Constrained beam search against exhaustive search and a plain per-beam reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simcit_dist.recommender.beam import beam_search
from simcit_dist.recommender.catalog import BOS, SidLayout
from simcit_dist.recommender.config import ModelConfig
from simcit_dist.recommender.model import TigerModel
from simcit_dist.recommender.trie import SidTrie

SIZES = (4, 3, 2)  # two code levels + suffix


def small_model(seed: int = 0) -> TigerModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=16, num_heads=2, head_dim=8, ffn_dim=32, num_encoder_layers=1,
                      num_decoder_layers=2, dropout=0.0, init_std=0.5)  # large init: peaked, distinct scores
    return TigerModel(cfg, SidLayout(SIZES), max_history=3).eval()


def valid_codes(seed: int, n: int = 14) -> np.ndarray:
    rng = np.random.default_rng(seed)
    all_codes = np.array(np.meshgrid(*[np.arange(s) for s in SIZES], indexing="ij")).reshape(len(SIZES), -1).T
    return all_codes[np.sort(rng.choice(len(all_codes), size=n, replace=False))]


def histories(batch: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    layout = SidLayout(SIZES)
    codes = np.stack([rng.integers(0, s, (batch, 3)) for s in SIZES], axis=-1)  # (B, H, D)
    return torch.from_numpy(layout.tokens(codes).reshape(batch, -1))


@torch.no_grad()
def sequence_scores(model: TigerModel, src: torch.Tensor, codes: np.ndarray) -> torch.Tensor:
    """Exhaustive: teacher-forced sum of per-position log-probs of every SID. -> (B, M)."""
    layout = model.layout
    memory, mask = model.encode(src)
    b, m = src.shape[0], len(codes)
    tokens = torch.from_numpy(layout.tokens(codes))  # (M, D)
    tgt_in = torch.cat([torch.full((m, 1), BOS), tokens[:, :-1]], dim=1)
    out = torch.zeros(b, m)
    for i in range(b):
        hidden = model.decode(tgt_in, memory[i:i + 1].expand(m, -1, -1), mask[i:i + 1].expand(m, -1))
        for d in range(layout.depth):
            logp = F.log_softmax(model.level_logits(hidden[:, d], d).float(), dim=-1)
            out[i] += logp[torch.arange(m), torch.from_numpy(codes[:, d])]
    return out


@torch.no_grad()
def reference_beam(model: TigerModel, src: torch.Tensor, beam: int, valid: np.ndarray) -> list[list[tuple]]:
    """Plain beam search: a Python list of beams per user, a set of valid prefixes, one call per beam."""
    prefixes = {tuple(r[:d]) for r in valid.tolist() for d in range(len(SIZES) + 1)}
    layout = model.layout
    results = []
    memory, mask = model.encode(src)
    for i in range(src.shape[0]):
        beams = [((), 0.0)]
        for depth in range(layout.depth):
            cands = []
            for codes, score in beams:
                tgt = torch.tensor([[BOS] + [layout.level_offsets[d] + c for d, c in enumerate(codes)]])
                logp = model.next_logprobs(tgt, memory[i:i + 1], mask[i:i + 1])[0]
                for code in range(layout.level_sizes[depth]):
                    if codes + (code,) in prefixes:
                        cands.append((codes + (code,), score + float(logp[code])))
            beams = sorted(cands, key=lambda c: -c[1])[:beam]
        results.append(beams)
    return results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constrained_beam_equals_exhaustive_search(seed: int) -> None:
    model, valid = small_model(seed), valid_codes(seed)
    src = histories(5, seed)
    trie = SidTrie(valid, SIZES)
    # Beam >= number of distinct (D-1)-prefixes: nothing valid is pruned before the last step,
    # so beam search must return exactly the exhaustive top-W.
    width = len({tuple(r[:-1]) for r in valid.tolist()})
    result = beam_search(model, src, width, trie)
    exhaustive = sequence_scores(model, src, valid)  # (B, M)
    top, idx = exhaustive.topk(width, dim=1)
    assert result.valid.all()
    for b in range(src.shape[0]):
        assert result.codes[b].tolist() == valid[idx[b].numpy()].tolist()
    torch.testing.assert_close(result.scores, top, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("seed", "width"), [(0, 2), (1, 3), (2, 5)])
def test_vectorized_beam_equals_plain_reference_with_pruning(seed: int, width: int) -> None:
    model, valid = small_model(seed), valid_codes(seed)
    src = histories(4, seed + 10)
    result = beam_search(model, src, width, SidTrie(valid, SIZES))
    ref = reference_beam(model, src, width, valid)
    for b in range(src.shape[0]):
        assert [tuple(c) for c in result.codes[b].tolist()] == [c for c, _ in ref[b]]
        np.testing.assert_allclose(result.scores[b].numpy(), [s for _, s in ref[b]], rtol=1e-5, atol=1e-5)


def test_more_beams_than_valid_sids_pads_with_invalid_beams() -> None:
    model, valid = small_model(), valid_codes(0, n=3)
    result = beam_search(model, histories(2, 0), 6, SidTrie(valid, SIZES))
    assert result.valid.sum(dim=1).tolist() == [3, 3]
    for b in range(2):
        got = {tuple(c) for c, ok in zip(result.codes[b].tolist(), result.valid[b].tolist()) if ok}
        assert got == {tuple(r) for r in valid.tolist()}
    assert torch.isinf(result.scores[~result.valid]).all()


class PrefersInvalid:
    """A scorer that puts almost all probability on codes no valid SID uses."""

    def __init__(self, layout: SidLayout, favoured: list[int]) -> None:
        self.layout, self.favoured = layout, favoured

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(src.shape[0], 1, 1), torch.ones(src.shape[0], 1, dtype=torch.bool)

    def decoder_memory(self, memory: torch.Tensor, mask: torch.Tensor) -> None:
        return None

    def beam_logprobs(self, tokens: torch.Tensor, memory: None) -> tuple[torch.Tensor, None]:
        depth = tokens.shape[2] - 1
        logits = torch.zeros(*tokens.shape[:2], self.layout.level_sizes[depth])
        logits[..., self.favoured[depth]] = 20.0
        logits += 0.01 * torch.arange(self.layout.level_sizes[depth])  # break ties deterministically
        return F.log_softmax(logits, dim=-1), None

    def reorder_memory(self, memory: None, beam: torch.Tensor) -> None:
        return None


def test_never_yields_invalid_sids_even_when_the_model_prefers_them() -> None:
    layout = SidLayout(SIZES)
    valid = np.array([[1, 0, 0], [1, 1, 1], [2, 2, 0], [3, 1, 1], [3, 2, 0], [0, 1, 1]])
    favoured = [0, 2, 1]  # (0, 2, 1) is not valid; nor is any SID through (0, 2) or (1, 2)
    model = PrefersInvalid(layout, favoured)
    src = torch.ones(3, 3, dtype=torch.long)
    result = beam_search(model, src, 4, SidTrie(valid, SIZES))
    allowed = {tuple(r) for r in valid.tolist()}
    for b in range(3):
        got = [tuple(c) for c in result.codes[b].tolist()]
        assert all(c in allowed for c in got) and len(set(got)) == 4
        assert got[0] == (0, 1, 1)  # the best valid SID through the favoured first code
    free = beam_search(model, src, 4, constrained=False)
    assert tuple(free.codes[0, 0].tolist()) == tuple(favoured)  # the check above could fail
    assert math.isfinite(float(free.scores[0, 0]))


def test_recommender_returns_items_and_drops_invalid_unconstrained_sids() -> None:
    from simcit_dist.recommender.catalog import SidCatalog
    from simcit_dist.recommender.evaluation import Recommender

    layout = SidLayout(SIZES)
    valid = np.array([[1, 0, 0], [1, 1, 1], [2, 2, 0], [3, 1, 1], [3, 2, 0], [0, 1, 1]])
    item_ids = np.array([10, 11, 12, 13, 14, 15])
    catalog = SidCatalog(layout, item_ids, valid)  # item index i has SID valid[i]
    rec = Recommender(PrefersInvalid(layout, [0, 2, 1]), catalog)
    hist = np.array([[0, 1, -1], [2, 3, 4]])
    top = rec.recommend(hist, 4, 4, constrained=True)
    assert top[:, 0].tolist() == [5, 5]  # (0, 1, 1): the best valid SID through the favoured first code
    assert all(len(set(row)) == 4 and min(row) >= 0 for row in top.tolist())
    free = rec.recommend(hist, 4, 4, constrained=False)
    # The favoured beams decode to SIDs no item has: they are skipped, so fewer than 4 items remain.
    assert (free == -1).any() and set(free[free >= 0].tolist()) <= set(range(6))


@pytest.mark.parametrize("t", [1, 2, 3])
def test_beam_step_equals_next_logprobs_of_each_beam(t: int) -> None:
    """The folded step (memory keys/values once per user, beams on the query axis), all positions at
    once or one per call from the cache, and after the beams are reordered = one plain decoder call per
    beam against that user's own memory, padding in the histories included."""
    model = small_model(3)
    src = histories(3, 4)
    src[0, :4] = 0  # PAD: a shorter history, masked out of cross-attention
    layout = model.layout
    rng = np.random.default_rng(t)
    codes = np.stack([rng.integers(0, s, (3, 4)) for s in SIZES[:t - 1]] or [np.zeros((3, 4), np.int64)],
                     axis=-1)[:, :, :t - 1]
    tokens = torch.cat([torch.full((3, 4, 1), BOS), torch.from_numpy(codes + np.asarray(
        layout.level_offsets[:t - 1], dtype=np.int64))], dim=2)  # (B, W, t)
    with torch.no_grad():
        memory, mask = model.encode(src)
        state = model.decoder_memory(memory, mask)
        folded, _ = model.beam_logprobs(tokens, state)  # all t positions at once
        cached = state
        for step in range(1, t + 1):  # one position per call, the earlier ones from the cache
            stepwise, cached = model.beam_logprobs(tokens[:, :, :step], cached)
        for b in range(3):
            plain = model.next_logprobs(tokens[b], memory[b:b + 1].expand(4, -1, -1), mask[b:b + 1].expand(4, -1))
            torch.testing.assert_close(folded[b], plain, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(stepwise[b], plain, atol=1e-5, rtol=1e-5)
        shuffled = torch.tensor([[2, 0, 0, 3]] * 3)  # beams picked after a topk: the cache follows them
        _, moved = model.beam_logprobs(tokens[:, :, :1], state)
        moved = model.reorder_memory(moved, shuffled)
        if t > 1:
            after, _ = model.beam_logprobs(torch.gather(tokens, 1, shuffled[:, :, None].expand(-1, -1, t))[:, :, :2],
                                           moved)
            plain = model.next_logprobs(tokens[1, [2, 0, 0, 3], :2], memory[1:2].expand(4, -1, -1),
                                        mask[1:2].expand(4, -1))
            torch.testing.assert_close(after[1], plain, atol=1e-5, rtol=1e-5)
