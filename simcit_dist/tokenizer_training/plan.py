"""What the tokenizer-training driver decides before any worker starts (``TokenizerPlan``) and
what a run hands back (``TokenizerRunResult``): the types the driver, the worker loop, the
k-means fit and the end-of-run evaluation share, kept apart so none of them imports another."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcit_dist.storage import resolve
from simcit_dist.tokenizer_training.config import TokenizerJobConfig


@dataclass
class TokenizerPlan:
    """Everything the workers need, decided (and validated) on the driver before they start."""

    cfg: TokenizerJobConfig
    input_dims: dict[str, int]
    with_partner: bool
    total_steps: int
    steps_per_epoch: int
    train_rows: int
    artifact_uri: str
    epochs: int = 1  # passes over the training rows that total_steps takes (the last may be partial)

    def __post_init__(self) -> None:
        # Made absolute here, in the driver: a worker would resolve a relative local path against its
        # own working directory (Ray's session directory), and the artifact would land there.
        self.artifact_uri = resolve(self.artifact_uri, self.cfg.storage).uri

    @property
    def local_batch(self) -> int:
        return self.cfg.train.batch_size // self.cfg.train.num_workers


@dataclass
class TokenizerRunResult:
    """Where a finished run's artifact is, how many steps it took, and its held-back metrics."""

    artifact_uri: str
    steps: int
    final_metrics: dict[str, float]
    history: list[dict[str, float]]
    checkpoint_path: str | None
    plots: dict[str, Any]
    epochs: float = 0.0  # passes over the training rows actually made (steps / steps per epoch)
