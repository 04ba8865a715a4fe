"""ZeRO-3 (parameters partitioned) against ZeRO-2 in 2 gloo processes, without Ray: same losses,
same recommendations through ``engine.module`` (what per-epoch validation uses), same weights.

Results come back as files, not through ``mp.Manager()``: a Manager forks this pytest process, and a
fork of a process that holds the session's Ray driver connection left later Ray Data actors of
the session pending forever (seen in CI: every SID-assignment test after this one timed out)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from simcit_dist.recommender.catalog import SidCatalog, SidLayout
from simcit_dist.recommender.config import ModelConfig, RecommenderTrainConfig
from simcit_dist.recommender.engine import build_engine, build_model, consolidated_state_dict, deepspeed_step
from simcit_dist.recommender.evaluation import Recommender
from simcit_dist.recommender.examples import make_batch

pytestmark = pytest.mark.slow
STEPS = 15


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    n = 64
    codes = np.stack([np.arange(n) // 8, np.arange(n) % 8, np.zeros(n, dtype=np.int64)], axis=1)
    catalog = SidCatalog(SidLayout((8, 8, 1)), np.arange(n), codes)
    rng = np.random.default_rng(0)
    hist = rng.integers(0, n, (32, 3))
    target = (hist[:, -1] * 5 + 3) % n
    mine = slice(rank * 16, (rank + 1) * 16)
    batch = make_batch(catalog, hist[mine], target[mine])
    cfg = ModelConfig(d_model=32, num_heads=2, head_dim=16, ffn_dim=64, num_encoder_layers=1,
                      num_decoder_layers=1, dropout=0.0)
    result = {}
    for stage in (2, 3):
        engine = build_engine(build_model(cfg, catalog.layout, 3, seed=0),
                              RecommenderTrainConfig(batch_size=32, lr=3e-3, num_workers=2,
                                             deepspeed={"zero_optimization": {"stage": stage}}))
        losses = [deepspeed_step(engine, batch) for _ in range(STEPS)]
        engine.eval()
        top = Recommender(engine.module, catalog).recommend(hist[:8], 5, 8)
        weights = consolidated_state_dict(engine)  # collective under ZeRO-3
        result[stage] = (losses, top, None if weights is None else {k: v.float() for k, v in weights.items()})
    torch.save(result, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_zero3_matches_zero2_on_two_gloo_processes(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(tmp_path)), nprocs=2)
    out = {rank: torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)}
    for rank in (0, 1):
        (l2, top2, _), (l3, top3, _) = out[rank][2], out[rank][3]
        assert l2[-1] < 0.7 * l2[0]  # it learned something
        np.testing.assert_allclose(l3, l2, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(top3, top2)
    w2, w3 = out[0][2][2], out[0][3][2]
    assert w2 is not None and w3 is not None and out[1][2][2] is None  # rank 0 holds the full weights
    assert max(float((w3[k] - w2[k]).abs().max()) for k in w2) < 1e-5
