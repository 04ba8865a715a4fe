"""CUDA checks (skipped without a GPU): beam search on the GPU, DeepSpeed bf16 ZeRO-2/3 over nccl.

These run where a GPU is lent (one process, world size 1); CPU CI skips them. Run with ``-s`` to
see the constrained vs unconstrained beam-search throughput they print.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from simcit_dist.recommender.beam import beam_search
from simcit_dist.recommender.catalog import SidCatalog, SidLayout
from simcit_dist.recommender.config import DataConfig, ModelConfig, RecommenderTrainConfig
from simcit_dist.recommender.engine import build_engine, build_model, consolidated_state_dict, deepspeed_step
from simcit_dist.recommender.evaluation import Recommender
from simcit_dist.recommender.export import ModelMeta, load_model, save_model
from simcit_dist.recommender.metrics import target_ranks
from simcit_dist.recommender.model import TigerModel, decoder_inputs
from simcit_dist.recommender.trie import SidTrie
from simcit_dist.storage import resolve

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def random_catalog(n: int, code_sizes: tuple[int, ...], seed: int) -> SidCatalog:
    """``n`` items with random codes; the suffix numbers items that share codes (unique full SIDs)."""
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, s, n) for s in code_sizes], axis=1)
    key = np.zeros(n, dtype=np.int64)
    for d, s in enumerate(code_sizes):
        key = key * s + codes[:, d]
    order = np.argsort(key, kind="stable")
    first = np.searchsorted(key[order], key[order])
    suffix = np.empty(n, dtype=np.int64)
    suffix[order] = np.arange(n) - first
    layout = SidLayout((*code_sizes, int(suffix.max()) + 1))
    return SidCatalog(layout, np.arange(n, dtype=np.int64), np.concatenate([codes, suffix[:, None]], axis=1))


def batch_of(catalog: SidCatalog, histories: np.ndarray, targets: np.ndarray) -> SimpleNamespace:
    tgt = torch.from_numpy(catalog.item_tokens(targets))
    return SimpleNamespace(src=torch.from_numpy(catalog.item_tokens(histories).reshape(len(histories), -1)),
                           tgt_in=decoder_inputs(tgt), tgt_codes=torch.from_numpy(catalog.codes[targets]))


@pytest.fixture(scope="module")
def nccl_group():
    import torch.distributed as dist

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29561")
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        dist.init_process_group("nccl", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_beam_search_on_gpu_matches_cpu() -> None:
    catalog = random_catalog(3000, (64, 64, 64), seed=0)
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=64, num_heads=2, head_dim=32, ffn_dim=128, num_encoder_layers=2,
                      num_decoder_layers=2, dropout=0.0, init_std=0.3)
    model = TigerModel(cfg, catalog.layout, max_history=5).eval()
    trie = SidTrie(catalog.unique_codes, catalog.layout.level_sizes)
    hist = np.random.default_rng(1).integers(0, catalog.num_items, (32, 5))
    src = torch.from_numpy(catalog.item_tokens(hist).reshape(32, -1))
    cpu = beam_search(model, src, 50, trie)
    gpu = beam_search(model.to(CUDA), src.to(CUDA), 50, trie.to(CUDA))
    torch.testing.assert_close(gpu.scores.cpu(), cpu.scores, atol=2e-3, rtol=1e-4)
    same = (gpu.codes.cpu() == cpu.codes).all(dim=2).float().mean().item()
    assert same > 0.95, same  # near-ties may swap places between CPU and GPU arithmetic
    keys = catalog.layout.keys(gpu.codes.cpu().numpy())
    assert np.isin(keys, catalog.sorted_keys).all()  # every beam is a valid SID


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_bf16_trains_saves_and_loads_on_gpu(stage: int, nccl_group, tmp_path) -> None:
    catalog = random_catalog(128, (16, 16), seed=1)  # fp32 on CPU: loss 2.0 -> 0.24 in 300 steps
    rng = np.random.default_rng(2)
    successor = rng.permutation(catalog.num_items)  # next item = a fixed function of the last one
    mcfg = ModelConfig(d_model=64, num_heads=4, head_dim=16, ffn_dim=256, num_encoder_layers=2,
                       num_decoder_layers=2, dropout=0.0)
    tcfg = RecommenderTrainConfig(batch_size=128, num_workers=1, lr=3e-3, use_gpu=True,
                          deepspeed={"zero_optimization": {"stage": stage}, "bf16": {"enabled": True},
                                     "gradient_clipping": 1.0})
    engine = build_engine(build_model(mcfg, catalog.layout, 4, seed=0), tcfg)
    assert next(engine.module.parameters()).dtype == torch.bfloat16
    losses = []
    for _ in range(300):
        hist = rng.integers(0, catalog.num_items, (128, 4))
        losses.append(deepspeed_step(engine, batch_of(catalog, hist, successor[hist[:, -1]])))
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20]), (losses[:3], losses[-3:])

    engine.save_checkpoint(str(tmp_path / "ds"), tag="t")
    other = build_engine(build_model(mcfg, catalog.layout, 4, seed=123), tcfg)
    other.load_checkpoint(str(tmp_path / "ds"), tag="t")
    probe = batch_of(catalog, hist, successor[hist[:, -1]])
    assert deepspeed_step(other, probe) == pytest.approx(deepspeed_step(engine, probe), abs=1e-6)

    weights = consolidated_state_dict(engine)
    assert weights is not None
    out = resolve(str(tmp_path / "model"))
    save_model(out, weights, ModelMeta(mcfg, DataConfig(max_history=4), catalog.layout, "sids", "v1"))
    model, _ = load_model(out.uri)
    rec = Recommender(model.to(CUDA), catalog, CUDA)
    hist = rng.integers(0, catalog.num_items, (256, 4))
    ranks = target_ranks(rec.recommend(hist, 10, 20, batch_size=256), successor[hist[:, -1]])
    assert (ranks >= 0).mean() > 0.5, (ranks >= 0).mean()  # Recall@10 of the learned mapping


def test_constrained_beam_throughput_at_algr_vocabulary() -> None:
    """AL-GR-like SIDs (3 x 8192 codes + suffix) over 1M items; prints users/s, checks validity."""
    catalog = random_catalog(1_000_000, (8192, 8192, 8192), seed=3)
    start = time.time()
    rec = Recommender(TigerModel(ModelConfig(), catalog.layout, max_history=20).to(CUDA).eval(), catalog, CUDA)
    build = time.time() - start
    hist = np.random.default_rng(4).integers(0, catalog.num_items, (1024, 20))
    rates = {}
    for constrained in (True, False):
        rec.recommend(hist[:64], 50, 50, constrained, batch_size=64)  # warm-up
        torch.cuda.synchronize()
        start = time.time()
        items = rec.recommend(hist, 50, 50, constrained, batch_size=256)
        torch.cuda.synchronize()
        rates[constrained] = len(hist) / (time.time() - start)
        if constrained:
            assert (items >= 0).all()  # 50 valid, distinct items for every user
            assert all(len(set(row)) == 50 for row in items.tolist())
    print(f"\ntrie+model build {build:.1f}s; beam 50 users/s: constrained {rates[True]:.0f}, "
          f"unconstrained {rates[False]:.0f}")
