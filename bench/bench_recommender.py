"""Recommender: the DeepSpeed training step vs the plain-DDP step (same model, same batch, same 2 Ray
Train workers), constrained vs unconstrained beam search, and evaluation time vs number of users.

Model and SID layout follow the AL-GR preset (``conf/recommender_algr.yaml``: d_model 256, 8 heads,
4 + 4 layers; 3 x 8192 codes + suffix) in full mode, a small model in smoke mode. Inputs are
random valid token sequences: step and search costs do not depend on what the tokens mean.

- steps: each worker builds both the DeepSpeed engine (``engine.build_engine``, ZeRO-2, fp32,
  clipping 1.0) and a DDP-wrapped copy with the same AdamW and clipping, then times
  ``deepspeed_step`` and ``ddp_step`` in alternating blocks on the same batch;
- beam search: ``beam.beam_search`` over a prefix trie of random SIDs, both modes on the same
  histories, in this process with all cores as torch threads;
- evaluation: ``Recommender.recommend`` (search + decode SIDs to items) for growing user counts.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import BenchContext, BenchResult, median, module_main, ratio, torch_threads

NAME = "recommender"
TITLE = "Recommender: DeepSpeed vs DDP step, constrained vs unconstrained beam search, evaluation scaling"
FIGURES = [
    "deepspeed_step_ms", "ddp_step_ms", "deepspeed_vs_ddp_step_time",
    "beam_constrained_users_per_s", "beam_unconstrained_users_per_s", "constrained_vs_unconstrained",
    "eval_ms_per_user_small", "eval_ms_per_user_large", "eval_scaling",
]
MAX_HISTORY = 20
WORKERS = 2


def model_and_layout(smoke: bool) -> tuple[Any, Any]:
    from simcit_dist.recommender.catalog import SidLayout
    from simcit_dist.recommender.config import ModelConfig

    if smoke:
        return (ModelConfig(d_model=64, num_heads=2, head_dim=32, ffn_dim=256, num_encoder_layers=2,
                            num_decoder_layers=2), SidLayout((256, 256, 256, 8)))
    return (ModelConfig(d_model=256, num_heads=8, head_dim=64, ffn_dim=1024, num_encoder_layers=4,
                        num_decoder_layers=4), SidLayout((8192, 8192, 8192, 8)))


def run(ctx: BenchContext) -> BenchResult:
    res = BenchResult()
    model_cfg, layout = model_and_layout(ctx.smoke)
    batch = 64  # per worker: the AL-GR model at 256 per worker takes ~30 s per CPU step
    res.details["setup"] = {"model": model_cfg.__dict__, "level_sizes": layout.level_sizes, "max_history": MAX_HISTORY,
                            "batch_per_worker": batch, "workers": WORKERS}
    steps = step_times(ctx, model_cfg, layout, batch, ctx.pick(3, 10))
    res.details["steps"] = steps
    res.add("deepspeed_step_ms", 1e3 * steps["deepspeed_s"], "ms/step", note=f"ZeRO-2, {batch} per worker")
    res.add("ddp_step_ms", 1e3 * steps["ddp_s"], "ms/step")
    res.add("deepspeed_vs_ddp_step_time", ratio(steps["deepspeed_s"], steps["ddp_s"]), "x", note="< 1: DeepSpeed faster")

    beam_size = ctx.pick(20, 100)
    num_sids = ctx.pick(20_000, 1_000_000)
    model = build_eval_model(model_cfg, layout)
    codes = random_sids(layout, num_sids, seed=1)
    with torch_threads(os.cpu_count() or 1):
        beam = beam_throughput(model, layout, codes, beam_size, users=32, batch=16)
        sizes = ctx.pick((16, 64), (32, 128))
        evals = eval_times(model, layout, codes, sizes, beam_size)
    res.details["beam"] = beam | {"beam_size": beam_size, "sids": num_sids}
    res.details["eval"] = {str(n): e for n, e in evals.items()}
    res.add("beam_constrained_users_per_s", beam["constrained"], "users/s", note=f"beam {beam_size}, {num_sids:,} SIDs")
    res.add("beam_unconstrained_users_per_s", beam["unconstrained"], "users/s")
    res.add("constrained_vs_unconstrained", ratio(beam["constrained"], beam["unconstrained"]), "x")
    small, large = (evals[n] for n in sizes)
    res.add("eval_ms_per_user_small", small["ms_per_user"], "ms/user", note=f"{sizes[0]} users")
    res.add("eval_ms_per_user_large", large["ms_per_user"], "ms/user", note=f"{sizes[1]} users")
    res.add("eval_scaling", ratio(large["ms_per_user"], small["ms_per_user"]), "x", note="1 = linear in users")
    return res


# ---- inputs --------------------------------------------------------------------------------------


def random_sids(layout: Any, n: int, seed: int) -> np.ndarray:
    """(n, D) distinct local codes (c1..cL, suffix), first-level codes skewed like a real catalog's."""
    rng = np.random.default_rng(seed)
    sizes = layout.level_sizes
    codes = np.stack([rng.integers(0, s, size=int(n * 1.1)) for s in sizes], axis=1)
    codes[:, 0] = np.minimum(rng.zipf(1.3, size=len(codes)) - 1, sizes[0] - 1)
    codes = np.unique(codes, axis=0)
    return codes[rng.permutation(len(codes))[:n]]


def random_batch(layout: Any, codes: np.ndarray, batch: int, seed: int) -> Any:
    from simcit_dist.recommender.examples import Batch
    from simcit_dist.recommender.model import decoder_inputs

    rng = np.random.default_rng(seed)
    history = codes[rng.integers(0, len(codes), size=(batch, MAX_HISTORY))]  # (B, H, D)
    target = codes[rng.integers(0, len(codes), size=batch)]  # (B, D)
    src = torch.from_numpy(layout.tokens(history).reshape(batch, -1))
    tgt_tokens = torch.from_numpy(layout.tokens(target))
    return Batch(src, decoder_inputs(tgt_tokens), torch.from_numpy(target.astype(np.int64)))


# ---- DeepSpeed vs DDP ----------------------------------------------------------------------------


def _steps_worker(config: dict[str, Any]) -> None:
    import ray.train
    from torch.nn.parallel import DistributedDataParallel

    from simcit_dist.recommender.config import RecommenderTrainConfig
    from simcit_dist.recommender.engine import (
        build_engine,
        build_model,
        build_optimizer,
        ddp_step,
        deepspeed_step,
    )

    rank = ray.train.get_context().get_world_rank()
    torch.set_num_threads(1)
    model_cfg, layout = model_and_layout(config["smoke"])
    tcfg = RecommenderTrainConfig(batch_size=config["batch"] * WORKERS, num_workers=WORKERS, torch_threads=1)
    engine = build_engine(build_model(model_cfg, layout, MAX_HISTORY, seed=0), tcfg)
    ddp_model = DistributedDataParallel(build_model(model_cfg, layout, MAX_HISTORY, seed=0))
    optimizer, _ = build_optimizer(ddp_model, tcfg)
    batch = random_batch(layout, random_sids(layout, 50_000, seed=0), config["batch"], seed=rank)
    steps = {"deepspeed": lambda: deepspeed_step(engine, batch),
             "ddp": lambda: ddp_step(ddp_model, optimizer, batch, torch.device("cpu"), clip=1.0)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():  # warm-up
        fn()
    for _ in range(config["rounds"]):
        for name, fn in steps.items():
            for _ in range(config["steps"]):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    if rank == 0:  # Ray Train V2 keeps reported metrics only with checkpoints: hand the result over as a file
        Path(config["out"]).write_text(json.dumps({f"{k}_s": median(v) for k, v in times.items()}))


def step_times(ctx: BenchContext, model_cfg: Any, layout: Any, batch: int, steps: int) -> dict[str, float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out = ctx.work / f"steps-{uuid.uuid4().hex[:6]}.json"
    trainer = TorchTrainer(
        _steps_worker,
        train_loop_config={"smoke": ctx.smoke, "batch": batch, "steps": max(1, steps // 2), "rounds": 2,
                           "out": str(out)},
        scaling_config=ScalingConfig(num_workers=WORKERS, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=f"rec-steps-{uuid.uuid4().hex[:6]}", storage_path=str(ctx.work / "ray")),
    )
    trainer.fit()
    return json.loads(out.read_text())


# ---- beam search and evaluation ------------------------------------------------------------------


def build_eval_model(model_cfg: Any, layout: Any) -> Any:
    from simcit_dist.recommender.engine import build_model

    return build_model(model_cfg, layout, MAX_HISTORY, seed=0).eval()


def beam_throughput(model: Any, layout: Any, codes: np.ndarray, beam_size: int, users: int, batch: int
                    ) -> dict[str, float]:
    from simcit_dist.recommender.beam import beam_search
    from simcit_dist.recommender.trie import SidTrie

    t = time.perf_counter()
    trie = SidTrie(codes, layout.level_sizes)
    trie_s = time.perf_counter() - t
    srcs = [random_batch(layout, codes, batch, seed=i).src for i in range(max(1, users // batch))]
    times: dict[str, list[float]] = {"constrained": [], "unconstrained": []}
    beam_search(model, srcs[0], beam_size, trie, constrained=True)  # warm-up
    for src in srcs:  # both modes on each batch, back to back
        for mode in times:
            t = time.perf_counter()
            beam_search(model, src, beam_size, trie, constrained=mode == "constrained")
            times[mode].append(time.perf_counter() - t)
    n = batch * len(srcs)
    return {mode: n / sum(ts) for mode, ts in times.items()} | {"trie_build_s": trie_s}


def eval_times(model: Any, layout: Any, codes: np.ndarray, sizes: tuple[int, ...], beam_size: int,
               rounds: int = 2) -> dict[int, dict[str, float]]:
    """``Recommender.recommend`` seconds for each number of users; sizes interleaved over ``rounds``,
    the fastest round kept (the least disturbed by other load on the machine)."""
    from simcit_dist.recommender.catalog import SidCatalog
    from simcit_dist.recommender.evaluation import Recommender

    catalog = SidCatalog(layout, np.arange(len(codes), dtype=np.int64), codes.astype(np.int64))
    rec = Recommender(model, catalog)
    histories = np.random.default_rng(0).integers(0, len(codes), size=(max(sizes), MAX_HISTORY))
    rec.recommend(histories[:8], k=10, beam_size=beam_size, batch_size=8)  # warm-up
    best = {n: math.inf for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            t = time.perf_counter()
            rec.recommend(histories[:n], k=10, beam_size=beam_size, constrained=True, batch_size=16)
            best[n] = min(best[n], time.perf_counter() - t)
    return {n: {"users": n, "seconds": s, "ms_per_user": 1e3 * s / n} for n, s in best.items()}


if __name__ == "__main__":
    module_main(NAME, TITLE, FIGURES, run)
