"""The config sections every training job shares, with one meaning per key in both trainers.

``train:`` (:class:`TrainSection`): the worker group and the optimisation budget. ``batch_size`` is
always the GLOBAL batch (every worker takes ``batch_size / num_workers`` rows); ``torch_threads``
0 means "as many as ``cpus_per_worker``". ``run:`` (:class:`RunSection`): where Ray Train keeps
the run (``RunConfig(storage_path=..., name=...)``), how many checkpoints it keeps and how often
the worker group may be restarted from the latest one. Re-running the same ``run.name`` resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass
class TrainSection:
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: int = 1
    torch_threads: int = 0  # intra-op threads per worker; 0 = cpus_per_worker
    batch_size: int = 256  # GLOBAL batch over all workers
    epochs: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up from lr / warmup_steps
    log_every: int = 10  # optimizer steps between progress lines (and tokenizer metric reports)

    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "num_to_keep": "it is run.num_to_keep in every training job",
        "max_failures": "it is run.max_failures in every training job",
        "log_every_steps": "it is train.log_every",
    }

    def __post_init__(self) -> None:
        for name in ("num_workers", "cpus_per_worker", "epochs", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < self.num_workers or self.batch_size % self.num_workers:
            raise ValueError(f"train.batch_size ({self.batch_size}) must be a positive multiple of "
                             f"train.num_workers ({self.num_workers}): it is the global batch, split evenly over the workers")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.torch_threads < 0 or self.weight_decay < 0:
            raise ValueError("train.warmup_steps, train.torch_threads and train.weight_decay must be >= 0")

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.num_workers

    @property
    def threads(self) -> int:
        """Intra-op threads of one worker (``torch.set_num_threads``)."""
        return self.torch_threads or self.cpus_per_worker


@dataclass
class RunSection:
    storage_path: str = "runs/ray"
    name: str = "run"
    num_to_keep: int = 2  # checkpoints Ray Train keeps (CheckpointConfig)
    max_failures: int = 0  # worker-group restarts from the latest checkpoint (FailureConfig); -1 = forever

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"run.name must be a non-empty name without '/', got {self.name!r}")
        if self.num_to_keep < 1 or self.max_failures < -1:
            raise ValueError("run.num_to_keep must be >= 1 and run.max_failures >= -1 (-1: retry forever)")
