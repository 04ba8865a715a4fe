"""Decoding: our trie-constrained beam search vs Hugging Face ``generate`` with ``prefix_allowed_tokens_fn``
(the way TIGER/LETTER re-implementations decode), same model size, beam width, SIDs and threads.

- ours: ``recommender.beam.beam_search`` with the CSR ``SidTrie`` (one masked ``topk`` per SID
  position over users x beams) on ``TigerModel``;
- Hugging Face: a ``T5ForConditionalGeneration`` of the same size (d_model, heads x head_dim, ffn,
  4 + 4 layers in full mode; TIGER's preset) over the same token vocabulary, ``generate(num_beams=W,
  num_return_sequences=W, max_new_tokens=D, prefix_allowed_tokens_fn=...)`` with the usual Python
  dict trie (token prefix -> allowed next tokens), as the re-implementations build it;
- the masking cost of one decode step alone: ``SidTrie.allowed_mask`` for every hypothesis vs HF's
  ``PrefixConstrainedLogitsProcessor`` (the per-hypothesis Python callback and mask fill) on the same
  hypotheses and scores.

Weights are random (seeded): the decode cost does not depend on what the model learnt. Both run in
this process with the same torch thread count, on the same histories, batch by batch, alternating.
``transformers`` is a benchmark-only dependency (it comes with the dev extra), never a library one.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from bench.common import BenchContext, BenchResult, module_main, ratio, torch_threads

NAME = "decode"
TITLE = "Decoding: trie-constrained beam search vs Hugging Face generate(prefix_allowed_tokens_fn)"
FIGURES = ["ours_users_per_s", "hf_generate_users_per_s", "ours_vs_hf_generate",
           "ours_mask_ms_per_step", "hf_mask_ms_per_step", "mask_speedup"]
MAX_HISTORY = 20


def sizes(smoke: bool) -> dict[str, Any]:
    """Full: TIGER's model (d 128, 6 x 64 heads, ffn 1024, 4 + 4 layers), beam 20, Beauty-sized
    catalog (12k items, 3 x 256 codes + suffix). Smoke: a tiny model and catalog."""
    from simcit_dist.recommender.catalog import SidLayout
    from simcit_dist.recommender.config import ModelConfig

    if smoke:
        return {"model": ModelConfig(d_model=32, num_heads=2, head_dim=16, ffn_dim=64, num_encoder_layers=1,
                                     num_decoder_layers=1, dropout=0.0),
                "layout": SidLayout((16, 16, 16, 4)), "items": 2_000, "beam": 5, "users": 16, "batch": 8}
    return {"model": ModelConfig(d_model=128, num_heads=6, head_dim=64, ffn_dim=1024, num_encoder_layers=4,
                                 num_decoder_layers=4, dropout=0.0),
            "layout": SidLayout((256, 256, 256, 8)), "items": 12_000, "beam": 20, "users": 256, "batch": 64}


def run(ctx: BenchContext) -> BenchResult:
    from simcit_dist.recommender.engine import build_model
    from simcit_dist.recommender.trie import SidTrie

    res = BenchResult()
    s = sizes(ctx.smoke)
    layout, beam, batch = s["layout"], s["beam"], s["batch"]
    codes = random_sids(layout, s["items"], seed=0)
    ours = build_model(s["model"], layout, MAX_HISTORY, seed=0).eval()
    hf = hf_model(s["model"], layout)
    trie, allowed = SidTrie(codes, layout.level_sizes), dict_trie(layout, codes)
    rng = np.random.default_rng(1)
    srcs = [torch.from_numpy(layout.tokens(codes[rng.integers(0, len(codes), size=(batch, MAX_HISTORY))])
                             .reshape(batch, -1)) for _ in range(max(1, s["users"] // batch))]
    threads = os.cpu_count() or 1
    with torch_threads(threads):
        seconds = decode_times(ours, hf, trie, allowed, srcs, layout, beam)
        masks = mask_times(trie, allowed, layout, codes, batch * beam, hf.config.vocab_size, ctx.pick(3, 10))
    users = batch * len(srcs)
    res.details["setup"] = {"model": s["model"].__dict__, "level_sizes": layout.level_sizes, "items": len(codes),
                            "beam": beam, "batch": batch, "users": users, "torch_threads": threads,
                            "hf_parameters": sum(p.numel() for p in hf.parameters()),
                            "our_parameters": sum(p.numel() for p in ours.parameters())}
    res.details["seconds"] = seconds
    res.details["mask_ms_per_step"] = masks
    note = f"beam {beam}, {len(codes):,} SIDs, {users} users, batch {batch}"
    res.add("ours_users_per_s", users / seconds["ours"], "users/s", note=note)
    res.add("hf_generate_users_per_s", users / seconds["hf"], "users/s", note="T5ForConditionalGeneration.generate")
    res.add("ours_vs_hf_generate", ratio(seconds["hf"], seconds["ours"]), "x", target=(">=", 5.0))
    res.add("ours_mask_ms_per_step", masks["ours"], "ms/step", note=f"{batch * beam} hypotheses")
    res.add("hf_mask_ms_per_step", masks["hf"], "ms/step", note="PrefixConstrainedLogitsProcessor")
    res.add("mask_speedup", ratio(masks["hf"], masks["ours"]), "x")
    return res


# ---- inputs --------------------------------------------------------------------------------------


def random_sids(layout: Any, n: int, seed: int) -> np.ndarray:
    """(n, D) distinct local codes (c1..cL, suffix)."""
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, size, size=int(n * 1.2)) for size in layout.level_sizes], axis=1)
    codes = np.unique(codes, axis=0)
    return codes[rng.permutation(len(codes))[:n]]


def hf_model(cfg: Any, layout: Any) -> Any:
    """A T5 of our model's size over the same vocabulary (+ one EOS the trie never allows, so every
    hypothesis runs the full D steps, as ours does)."""
    from transformers import T5Config, T5ForConditionalGeneration

    from simcit_dist.recommender.catalog import BOS, PAD

    config = T5Config(vocab_size=layout.vocab_size + 1, d_model=cfg.d_model, d_kv=cfg.head_dim, d_ff=cfg.ffn_dim,
                      num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers,
                      num_heads=cfg.num_heads, dropout_rate=0.0, pad_token_id=PAD, eos_token_id=layout.vocab_size,
                      decoder_start_token_id=BOS, tie_word_embeddings=False)
    torch.manual_seed(0)
    return T5ForConditionalGeneration(config).eval()


def dict_trie(layout: Any, codes: np.ndarray) -> dict[tuple[int, ...], list[int]]:
    """Token prefix (after the start token) -> sorted allowed next tokens: the re-implementations' trie."""
    tokens = layout.tokens(codes)
    nxt: dict[tuple[int, ...], set[int]] = defaultdict(set)
    for row in tokens.tolist():
        for t in range(len(row)):
            nxt[tuple(row[:t])].add(row[t])
    return {k: sorted(v) for k, v in nxt.items()}


def prefix_fn(allowed: dict[tuple[int, ...], list[int]]) -> Any:
    def allowed_tokens(batch_id: int, sent: torch.Tensor) -> list[int]:
        return allowed.get(tuple(sent.tolist()[1:]), [])

    return allowed_tokens


# ---- timings -------------------------------------------------------------------------------------


@torch.no_grad()
def decode_times(ours: Any, hf: Any, trie: Any, allowed: dict[tuple[int, ...], list[int]], srcs: list[torch.Tensor],
                 layout: Any, beam: int) -> dict[str, float]:
    """Total seconds of each decoder over all batches (alternating per batch, after one warm-up each)."""
    from simcit_dist.recommender.beam import beam_search
    from simcit_dist.recommender.catalog import PAD

    fn = prefix_fn(allowed)
    runs = {
        "ours": lambda src: beam_search(ours, src, beam, trie, constrained=True),
        "hf": lambda src: hf.generate(input_ids=src, attention_mask=src != PAD, num_beams=beam,
                                      num_return_sequences=beam, max_new_tokens=layout.depth, do_sample=False,
                                      prefix_allowed_tokens_fn=fn, early_stopping=False),
    }
    check_valid(runs["hf"](srcs[0]), allowed, start=1)  # warm-up, and both decode only valid SIDs
    check_valid(torch.from_numpy(layout.tokens(runs["ours"](srcs[0]).codes.numpy())).flatten(0, 1), allowed, 0)
    totals = dict.fromkeys(runs, 0.0)
    for src in srcs:
        for name, decode in runs.items():
            t = time.perf_counter()
            decode(src)
            totals[name] += time.perf_counter() - t
    return totals


def check_valid(sequences: torch.Tensor, allowed: dict[tuple[int, ...], list[int]], start: int) -> None:
    """Every decoded token sequence (from column ``start``: 1 skips HF's start token) is a SID of the catalog."""
    for row in sequences.tolist():
        seq = row[start:]
        if any(seq[t] not in allowed.get(tuple(seq[:t]), ()) for t in range(len(seq))):
            raise AssertionError(f"decoded an invalid SID: {seq}")


def mask_times(trie: Any, allowed: dict[tuple[int, ...], list[int]], layout: Any, codes: np.ndarray,
               hypotheses: int, vocab: int, repeats: int) -> dict[str, float]:
    """Mean ms to mask one decode step of ``hypotheses`` beams, averaged over the SID positions."""
    from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

    from simcit_dist.recommender.catalog import BOS

    rng = np.random.default_rng(2)
    prefixes = layout.tokens(codes[rng.integers(0, len(codes), size=hypotheses)])  # real prefixes of valid SIDs
    processor = PrefixConstrainedLogitsProcessor(prefix_fn(allowed), num_beams=1)
    ours, hf = [], []
    for depth in range(layout.depth):
        nodes = trie_nodes(trie, codes, prefixes, layout, depth)
        ids = torch.cat([torch.full((hypotheses, 1), BOS), torch.from_numpy(prefixes[:, :depth])], dim=1)
        scores = torch.randn(hypotheses, vocab)
        for _ in range(repeats):
            t = time.perf_counter()
            trie.allowed_mask(depth, nodes)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            processor(ids, scores)
            hf.append(time.perf_counter() - t)
    return {"ours": 1e3 * float(np.mean(ours)), "hf": 1e3 * float(np.mean(hf))}


def trie_nodes(trie: Any, codes: np.ndarray, prefixes: np.ndarray, layout: Any, depth: int) -> torch.Tensor:
    """The trie node each hypothesis sits at after ``depth`` codes (walked with ``SidTrie.step``)."""
    local = prefixes - np.asarray(layout.level_offsets)
    nodes = torch.zeros(len(prefixes), dtype=torch.long)
    for d in range(depth):
        nodes = trie.step(d, nodes, torch.from_numpy(local[:, d]))
    return nodes


if __name__ == "__main__":
    module_main(NAME, TITLE, FIGURES, run, needs_ray=False)
