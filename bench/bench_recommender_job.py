"""The recommender job's training loop vs a plain single-process PyTorch loop: same model, global
batch, batches and cores.

- job: ``recommender.trainer.fit`` as ``jobs/train_recommender.py`` runs it (Ray Train
  ``TorchTrainer``, 2 workers x 1 CPU, gloo, DeepSpeed ZeRO-2, fp32, clipping 1.0), for 2 epochs of
  ``steps`` steps; its examples/s are read from the loop's own epoch timing (``train_seconds`` of the
  second epoch: steps only, without validation, checkpointing or start-up), and, apart, the wall time
  of the whole ``fit`` call;
- plain loop: one process, all the cores as torch threads, the same ``TigerModel``, AdamW, clipping and
  global batch, the batches the job's rank 0 would draw (``examples.train_batches``), timed over the
  same number of steps after a warm-up epoch;
- a profile of the plain step: batch building, forward, backward, optimizer.

The model is the TIGER preset (d 128, 6 x 64 heads, ffn 1024, 4 + 4 layers, history 20) in full
mode over a Beauty-sized catalog (12k items, 3 x 256 codes + suffix); a tiny one in smoke mode.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import numpy as np
import torch

from bench.common import BenchContext, BenchResult, module_main, ratio, synthetic_dataset, torch_threads

NAME = "recommender_job"
TITLE = "Recommender: the Ray Train + DeepSpeed job's training loop vs a plain single-process PyTorch loop"
FIGURES = ["job_examples_per_s", "plain_loop_examples_per_s", "recommender_job_vs_plain_loop",
           "job_wall_examples_per_s", "plain_step_batch_fraction"]
WORKERS = 2


def setup(smoke: bool) -> dict[str, Any]:
    from simcit_dist.inputs.synthetic import SyntheticConfig
    from simcit_dist.recommender.config import ModelConfig

    if smoke:
        return {"model": ModelConfig(d_model=32, num_heads=2, head_dim=16, ffn_dim=64, num_encoder_layers=1,
                                     num_decoder_layers=1),
                "data": SyntheticConfig(num_items=600, modalities={"emb": 4}, num_users=600, mean_seq_len=12,
                                        branching=[4, 4, 2], level_scales=[1.0, 0.5, 0.25]),
                "codebook": 16, "batch": 64, "steps": 4}
    return {"model": ModelConfig(d_model=128, num_heads=6, head_dim=64, ffn_dim=1024, num_encoder_layers=4,
                                 num_decoder_layers=4),
            "data": SyntheticConfig(num_items=12_000, modalities={"emb": 4}, num_users=20_000, mean_seq_len=10),
            "codebook": 256, "batch": 256, "steps": 30}


def run(ctx: BenchContext) -> BenchResult:
    res = BenchResult()
    s = setup(ctx.smoke)
    inputs = prepare_inputs(ctx, s)
    cfg = recommender_config(s)
    job = job_timing(ctx, cfg, inputs)
    with torch_threads(WORKERS):  # the same cores as the job's 2 workers x 1 thread
        plain = plain_timing(cfg, inputs, s["steps"])
    examples = s["steps"] * s["batch"]
    res.details["setup"] = {"model": s["model"].__dict__, "global_batch": s["batch"], "steps": s["steps"],
                            "items": s["data"].num_items, "users": s["data"].num_users, "workers": WORKERS}
    res.details["job"], res.details["plain"] = job, plain
    res.add("job_examples_per_s", examples / job["train_seconds"], "examples/s",
            note=f"2nd epoch, {s['steps']} steps x {s['batch']}, ZeRO-2 on {WORKERS} gloo workers")
    res.add("plain_loop_examples_per_s", examples / plain["seconds"], "examples/s", note=f"{WORKERS} torch threads")
    res.add("recommender_job_vs_plain_loop", ratio(plain["seconds"], job["train_seconds"]), "x", target=(">=", 0.9))
    res.add("job_wall_examples_per_s", 2 * examples / job["wall_seconds"], "examples/s",
            note="whole fit(): start-up, 2 epochs, validation, checkpoints")
    res.add("plain_step_batch_fraction", plain["profile"]["batch"] / sum(plain["profile"].values()), "fraction",
            note="share of a plain step spent building the batch (numpy -> tensors)")
    return res


def prepare_inputs(ctx: BenchContext, s: dict[str, Any]) -> dict[str, Any]:
    """Synthetic interactions, a random SID table published through the LETTER-index importer, and
    the per-user sequence table (all cached under the bench's work dir)."""
    from simcit_dist.assign.external import import_letter_index
    from simcit_dist.recommender.catalog import load_catalog
    from simcit_dist.recommender.config import DataConfig
    from simcit_dist.recommender.sequences import build_sequences
    from simcit_dist.storage import resolve

    root = synthetic_dataset(ctx.data / f"rec-job-{s['data'].num_items}", s["data"], with_interactions=True)
    rng = np.random.default_rng(0)
    ids = np.arange(s["data"].num_items) + s["data"].item_id_offset
    index = {str(i): [f"<{'abc'[level]}_{c}>" for level, c in enumerate(rng.integers(0, s["codebook"], 3))]
             for i in ids}
    index_path = ctx.work / "index.json"
    index_path.write_text(json.dumps(index))
    sid_root = str(ctx.work / "sids")
    version = import_letter_index(str(index_path), sid_root).version
    data = DataConfig(max_history=20, num_partitions=4)
    sequences = resolve(str(ctx.work / "sequences"))
    build_sequences(str(root / "interactions"), load_catalog(sid_root, None, version), sequences, data)
    return {"sid_root": sid_root, "version": version, "sequences": sequences, "data": data}


def recommender_config(s: dict[str, Any]) -> Any:
    from simcit_dist.recommender.config import (
        DataConfig,
        EvalConfig,
        RecommenderConfig,
        RecommenderTrainConfig,
    )

    return RecommenderConfig(
        model=s["model"], data=DataConfig(max_history=20, num_partitions=4),
        train=RecommenderTrainConfig(epochs=2, batch_size=s["batch"], lr=1e-3, num_workers=WORKERS, torch_threads=1,
                                     max_steps_per_epoch=s["steps"], log_every=1_000_000,
                                     deepspeed={"zero_optimization": {"stage": 2}, "gradient_clipping": 1.0}),
        eval=EvalConfig(beam_size=10, ks=[10], num_workers=1, max_epoch_examples=32))


def job_timing(ctx: BenchContext, cfg: Any, inputs: dict[str, Any]) -> dict[str, float]:
    from simcit_dist.recommender.trainer import WorkerJob, fit
    from simcit_dist.train.config import RunSection

    run = RunSection(storage_path=str(ctx.work / "ray"), name=f"job-{uuid.uuid4().hex[:6]}", num_to_keep=2)
    start = time.perf_counter()
    result = fit(WorkerJob(cfg, inputs["sequences"].uri, inputs["sid_root"], inputs["version"]), run)
    wall = time.perf_counter() - start
    second = result.state.history[-1]
    return {"train_seconds": float(second["train_seconds"]), "epoch_seconds": float(second["seconds"]),
            "wall_seconds": wall, "first_epoch_train_seconds": float(result.state.history[0]["train_seconds"])}


def plain_timing(cfg: Any, inputs: dict[str, Any], steps: int) -> dict[str, Any]:
    """Seconds of ``steps`` plain steps (after a warm-up pass over the same steps), and a per-phase
    profile of those steps."""
    from simcit_dist.data.parquet_io import read_table
    from simcit_dist.recommender.catalog import load_catalog
    from simcit_dist.recommender.engine import batch_loss, build_model, build_optimizer
    from simcit_dist.recommender.examples import UserSequences, train_batches

    catalog = load_catalog(inputs["sid_root"], None, inputs["version"])
    seqs = UserSequences.from_table(read_table(inputs["sequences"], columns=["user_id", "items"]))
    model = build_model(cfg.model, catalog.layout, cfg.data.max_history, cfg.train.seed).train()
    optimizer, schedule = build_optimizer(model, cfg.train)
    device = torch.device("cpu")
    phases = {"batch": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    seconds = 0.0
    for epoch in range(2):
        batches = train_batches(seqs, catalog, cfg.data, cfg.train.batch_size, steps, cfg.train.seed, epoch, 0)
        start = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            batch = next(batches)
            t1 = time.perf_counter()
            loss = batch_loss(model, batch, device)
            t2 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t3 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            t4 = time.perf_counter()
            if epoch == 1:
                for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    phases[name] += dt
        if epoch == 1:
            seconds = time.perf_counter() - start
    return {"seconds": seconds, "profile": phases}


if __name__ == "__main__":
    module_main(NAME, TITLE, FIGURES, run)
