"""Ray Train ``TorchTrainer`` + DeepSpeed training of the recommender, with resumable checkpoints.

One loop for every model family (:class:`WorkerTask`: the SID model's :class:`SidTask` here,
SASRec in :mod:`simcit_dist.recommender.sasrec`). Each epoch: DeepSpeed steps over this rank's shard, validation Recall@K on a fixed subset of
the validation targets (scored by every rank, sums all-reduced), then a checkpoint reported with
that score. Ray keeps the best-scoring checkpoints and always the latest; the run's best epoch
(``TrainState.best_epoch``) is the one evaluation loads, and ``train.patience`` stops the run
early (:mod:`simcit_dist.train.early_stopping`). Checkpoint
layout (each rank saves into its own temp dir, Ray merges the uploads into one directory)::

    deepspeed/<tag>/...   DeepSpeed save_checkpoint (model, optimizer shards, LR schedule)
    deepspeed/latest      (rank 0)
    model/                consolidated weights + config (rank 0; what evaluation loads)
    state.json            epoch, global step, per-epoch history (rank 0)

Re-running with the same ``run.name`` makes Ray hand the latest checkpoint back
(``ray.train.get_checkpoint()``); the loop loads it and continues with the next epoch. Batch
order and dropout are seeded per (epoch, rank), so a resumed epoch is the epoch an
uninterrupted run would have trained.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from simcit_dist.cpu_claims import pool_cpus
from simcit_dist.recommender.catalog import load_catalog
from simcit_dist.recommender.config import EvalConfig, RecommenderConfig, RecommenderTrainConfig
from simcit_dist.recommender.engine import batch_loss, build_engine, build_model, consolidated_state_dict
from simcit_dist.recommender.evaluation import BeamRanker, Recommender, score_examples
from simcit_dist.recommender.examples import Batch, load_shard, train_batches
from simcit_dist.recommender.export import ModelMeta, load_meta, save_model
from simcit_dist.recommender.metrics import finalize
from simcit_dist.recommender.sequences import count_examples
from simcit_dist.storage import Location, StorageConfig, read_json, resolve
from simcit_dist.train.config import RunSection
from simcit_dist.train.early_stopping import EarlyStopping
from simcit_dist.train.run import ray_run_config
from simcit_dist.train.state import TrainState, state_from_json, state_to_json
from simcit_dist.train.worker import start_worker

log = logging.getLogger(__name__)

DEEPSPEED_DIR = "deepspeed"
STATE_FILE = "state.json"
SCORE = "valid_score"  # the reported metric Ray's CheckpointConfig ranks checkpoints by
# Tests only: comma-separated selection scores per epoch, standing in for validation Recall (which
# a tiny model does not make peak on cue), to check selection and early stopping end to end.
SCORES_ENV = "SIMCIT_VALID_SCORES"


class WorkerTask(Protocol):
    """One model family on one rank, as the shared epoch loop drives it (the SID model here, SASRec in
    :mod:`simcit_dist.recommender.sasrec`): its model, batches, loss, validation and export."""

    @property
    def model(self) -> nn.Module: ...

    def num_train_examples(self) -> int:
        """Training examples (what ``train.batch_size`` counts) in this rank's shard."""
        ...

    def train_batches(self, batch_size: int, steps: int, epoch: int, rank: int) -> Iterator[Any]: ...

    def loss(self, engine: Any, batch: Any) -> torch.Tensor: ...

    def validation_sums(self, engine: Any, limit: int | None) -> dict[str, float]:
        """Metric sums over this rank's share (``limit`` examples at most) of the validation split."""
        ...

    def check_checkpoint(self, model_dir: str) -> None:
        """Raise if a checkpoint's exported model cannot be resumed by this run."""
        ...

    def save_model(self, out: Location, weights: dict[str, torch.Tensor]) -> None: ...


class TrainingJob(Protocol):
    """What :func:`fit` pickles to the workers: the configs, and how a rank opens its task."""

    cfg: Any  # .train: RecommenderTrainConfig, .eval: EvalConfig
    storage: StorageConfig | None

    def open(self, rank: int, world: int) -> WorkerTask: ...


@dataclass
class WorkerJob:
    """The SID model's training job (pickled into ``train_loop_config``)."""

    cfg: RecommenderConfig
    sequences: str  # URI of the per-user sequence table
    sid_root: str
    sid_version: str  # pinned by the driver: every worker decodes the same table
    storage: StorageConfig | None = None

    def __post_init__(self) -> None:
        # Made absolute here, in the driver: a worker would resolve a relative local path against
        # its own working directory (Ray's session directory).
        self.sequences = resolve(self.sequences, self.storage).uri
        self.sid_root = resolve(self.sid_root, self.storage).uri

    def open(self, rank: int, world: int) -> SidTask:
        return SidTask(self, rank, world)


class SidTask:
    """The TIGER-style model on one rank: SID-token batches, beam-search validation."""

    def __init__(self, job: WorkerJob, rank: int, world: int) -> None:
        cfg = self.cfg = job.cfg
        self.sid_version = job.sid_version
        self.catalog = load_catalog(job.sid_root, job.storage, job.sid_version)
        self.seqs = load_shard(resolve(job.sequences, job.storage), cfg.data, rank, world)
        self.model = build_model(cfg.model, self.catalog.layout, cfg.data.max_history, cfg.train.seed)
        self.meta = ModelMeta(cfg.model, cfg.data, self.catalog.layout, job.sid_root, job.sid_version)

    def num_train_examples(self) -> int:
        return int(count_examples(self.seqs.lengths, self.cfg.data, "train").sum())

    def train_batches(self, batch_size: int, steps: int, epoch: int, rank: int) -> Iterator[Batch]:
        return train_batches(self.seqs, self.catalog, self.cfg.data, batch_size, steps, self.cfg.train.seed,
                             epoch, rank)

    def loss(self, engine: Any, batch: Batch) -> torch.Tensor:
        return batch_loss(engine, batch, engine.device)

    def validation_sums(self, engine: Any, limit: int | None) -> dict[str, float]:
        ranker = BeamRanker(Recommender(engine.module, self.catalog, engine.device), self.cfg.eval)
        return score_examples(ranker, self.seqs, self.cfg.data, "valid", self.cfg.eval, limit=limit)

    def check_checkpoint(self, model_dir: str) -> None:
        check_sid_version(model_dir, self.sid_version)

    def save_model(self, out: Location, weights: dict[str, torch.Tensor]) -> None:
        save_model(out, weights, self.meta)


def check_sid_version(model_dir: str, sid_version: str) -> None:
    """A run keeps the SID version it started with: token ids mean nothing across versions."""
    trained_on = load_meta(model_dir).sid_version
    if trained_on != sid_version:
        raise ValueError(f"this run was trained on SID version {trained_on!r}, not {sid_version!r}: resume "
                         f"with sid_version={trained_on} or start a new run.name")


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker entry point: ``config = {"job": TrainingJob, "scores": None | [float]}``."""
    import ray.train

    job: TrainingJob = config["job"]
    scripted: list[float] | None = config.get("scores")
    cfg = job.cfg
    rank, world = start_worker(cfg.train)
    task = job.open(rank, world)
    engine = build_engine(task.model, cfg.train)
    state = restore(engine, ray.train.get_checkpoint(), task)
    steps = steps_per_epoch(task.num_train_examples(), cfg.train)
    if rank == 0:
        log.info("training %d steps/epoch, global batch %d = %d per worker x %d workers, epochs %d..%d", steps,
                 cfg.train.batch_size, cfg.train.per_worker_batch, world, state.epoch + 1, cfg.train.epochs)
    stopper = EarlyStopping(cfg.train.patience, cfg.train.min_delta)
    for epoch in range(state.epoch, cfg.train.epochs):
        if stopper.should_stop(state):  # a resumed run that had already stopped early
            break
        start = time.time()
        train_loss = train_epoch(engine, task, cfg.train, epoch, rank, steps, state)
        train_seconds = time.time() - start
        valid = validate(engine, task, cfg.eval, world)
        score = valid[f"recall@{cfg.eval.epoch_metric_k}"] if scripted is None else scripted[epoch]
        stopper.update(state, epoch + 1, score)  # every rank sees the same all-reduced score
        metrics = {"epoch": epoch + 1, "global_step": state.step, "train_loss": train_loss,
                   **{f"valid/{k}": v for k, v in valid.items()}, "seconds": time.time() - start,
                   "train_seconds": train_seconds, "train_examples": steps * cfg.train.batch_size,
                   SCORE: score if score == score else -1.0, "best_epoch": state.best_epoch}
        state.epoch = epoch + 1
        state.history.append(metrics)
        if rank == 0:
            log.info("epoch %d/%d: loss %.4f, valid recall@%d %.4f (%d examples; best: epoch %d), %.1fs",
                     epoch + 1, cfg.train.epochs, train_loss, cfg.eval.epoch_metric_k, score, valid["count"],
                     state.best_epoch, metrics["seconds"])
        save_and_report(engine, task, state, metrics, rank)
        if stopper.should_stop(state) and rank == 0:
            log.info("early stop after epoch %d: no validation gain > %g for %d epochs (best: epoch %d)",
                     epoch + 1, cfg.train.min_delta, cfg.train.patience, state.best_epoch)


def steps_per_epoch(local_examples: int, train: RecommenderTrainConfig) -> int:
    """Global step count: every rank must take the same number of steps (collectives), so the
    smallest shard decides; shards are balanced by example count, so little is left out."""
    import torch.distributed as dist

    steps = torch.tensor([local_examples // train.per_worker_batch], dtype=torch.long)
    if dist.is_initialized():
        dist.all_reduce(steps, op=dist.ReduceOp.MIN)
    out = int(steps.item())
    if train.max_steps_per_epoch is not None:
        out = min(out, train.max_steps_per_epoch)
    if out < 1:
        raise ValueError(f"a worker's shard has fewer than train.batch_size / train.num_workers = "
                         f"{train.per_worker_batch} training examples; lower the batch size or the number of workers")
    return out


def train_epoch(engine: Any, task: WorkerTask, train: RecommenderTrainConfig, epoch: int, rank: int, steps: int,
                state: TrainState) -> float:
    """One epoch of DeepSpeed steps; returns the mean loss over all ranks and steps."""
    import torch.distributed as dist

    torch.manual_seed(train.seed * 1_000_003 + epoch * 1009 + rank)  # dropout masks per (epoch, rank)
    engine.train()
    total = 0.0
    for i, batch in enumerate(task.train_batches(train.per_worker_batch, steps, epoch, rank)):
        loss = task.loss(engine, batch)
        engine.backward(loss)
        engine.step()  # clipping, ZeRO reduction and the LR schedule happen inside
        value = float(loss.detach())
        total += value
        state.step += 1
        if rank == 0 and (i + 1) % train.log_every == 0:
            log.info("epoch %d step %d/%d (global %d): loss %.4f", epoch + 1, i + 1, steps, state.step, value)
    mean = torch.tensor([total / steps])
    if dist.is_initialized():
        dist.all_reduce(mean)
        mean /= dist.get_world_size()
    return float(mean.item())


def validate(engine: Any, task: WorkerTask, cfg: EvalConfig, world: int) -> dict[str, float]:
    """Recall/NDCG on this rank's share of a fixed validation subset, summed over ranks."""
    import torch.distributed as dist

    engine.module.eval()
    limit = None if cfg.max_epoch_examples is None else math.ceil(cfg.max_epoch_examples / world)
    with torch.no_grad():
        sums = task.validation_sums(engine, limit)
    keys = sorted(sums)
    values = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(values)
    return finalize(dict(zip(keys, values.tolist())))


def save_and_report(engine: Any, task: WorkerTask, state: TrainState, metrics: dict[str, float], rank: int) -> None:
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        engine.save_checkpoint(os.path.join(tmp, DEEPSPEED_DIR), tag=f"global_step{state.step}")
        weights = consolidated_state_dict(engine)  # collective under ZeRO-3
        if rank == 0:
            assert weights is not None
            task.save_model(resolve(os.path.join(tmp, "model")), weights)
            with open(os.path.join(tmp, STATE_FILE), "w") as f:
                json.dump(state_to_json(state), f)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def restore(engine: Any, checkpoint: Any, task: WorkerTask) -> TrainState:
    """Load DeepSpeed state and the loop state from a Ray checkpoint (fresh state when None)."""
    if checkpoint is None:
        return TrainState()
    with checkpoint.as_directory() as path:
        task.check_checkpoint(os.path.join(path, "model"))
        load_path, _ = engine.load_checkpoint(os.path.join(path, DEEPSPEED_DIR))
        if load_path is None:
            raise RuntimeError(f"{path}: DeepSpeed found no checkpoint to load under {DEEPSPEED_DIR}/")
        with open(os.path.join(path, STATE_FILE)) as f:
            raw = json.load(f)
    state = state_from_json(raw)
    state.resumed_from.append(state.step)
    log.info("resumed from %s: epoch %d, global step %d", load_path, state.epoch, state.step)
    return state


@dataclass
class FitResult:
    checkpoint: Location  # the latest checkpoint directory
    best: Location  # the checkpoint of the best validation epoch (the latest when none scored)
    state: TrainState  # the latest loop state: history, best_epoch, epochs_since_best


def fit(job: TrainingJob, run: RunSection) -> FitResult:
    """Run (or resume) training on Ray; returns the latest checkpoint and its loop state."""
    from ray.train import CheckpointConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    training = job.cfg.train
    keep = CheckpointConfig(num_to_keep=run.num_to_keep, checkpoint_score_attribute=SCORE,
                            checkpoint_score_order="max")  # the best ones, plus always the latest
    run_config, root = ray_run_config(run, job.storage, keep)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job, "scores": [float(s) for s in os.environ[SCORES_ENV].split(",")]
                           if SCORES_ENV in os.environ else None},
        scaling_config=ScalingConfig(num_workers=training.num_workers, use_gpu=training.use_gpu,
                                     # the workers read their own shards (no Ray Data feeding them)
                                     resources_per_worker={"CPU": pool_cpus(training.cpus_per_worker,
                                                                            training.num_workers,
                                                                            "recommender training workers",
                                                                            keep_free=0.0)}),
        torch_config=TorchConfig(backend="nccl" if training.use_gpu else "gloo"),
        run_config=run_config,
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"run {run.name!r} finished without a checkpoint")
    latest = _location(result.checkpoint, root)
    state = state_from_json(read_json(latest.child(STATE_FILE)))
    best = next((ckpt for ckpt, m in result.best_checkpoints or [] if m.get("epoch") == state.best_epoch), None)
    if best is None and state.best_epoch:
        raise RuntimeError(f"run {run.name!r}: the checkpoint of the best epoch ({state.best_epoch}) is gone; "
                           "run.num_to_keep must be >= 2 (Ray keeps the latest checkpoint besides the best ones)")
    return FitResult(latest, _location(best, root) if best is not None else latest, state)


def _location(ckpt: Any, root: Location) -> Location:
    uri = f"s3://{ckpt.path}" if root.is_s3 else ckpt.path
    return Location(root.fs if root.is_s3 else ckpt.filesystem, ckpt.path, uri)
