"""Typed config of ``jobs/train_tokenizer.py``: data, model, Ray Train and run sections.

    cfg = load_config(TokenizerJobConfig, "conf/tokenizer.yaml", ["train.num_workers=4"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from simcit_dist.storage import StorageConfig
from simcit_dist.tokenizer.config import TokenizerConfig


@dataclass
class RunSection:
    """Where a run's state goes. ``storage_path``/``name`` are Ray Train's ``RunConfig``: checkpoints
    land in ``<storage_path>/<name>/`` (local or s3://) and re-running the same name resumes.
    ``run_dir`` is a local directory for the human-facing report (markdown, plots, metrics.json)."""

    storage_path: str = "runs/ray"
    name: str = "tokenizer"
    run_dir: str = "runs/tokenizer"
    artifact: str | None = None  # final tokenizer; None -> <storage_path>/<name>/tokenizer

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"run.name must be a non-empty name without '/', got {self.name!r}")

    def artifact_uri(self) -> str:
        return self.artifact or f"{self.storage_path.rstrip('/')}/{self.name}/tokenizer"


@dataclass
class TokenizerDataConfig:
    """Training inputs of the tokenizer job."""

    catalog: str = "runs/data/synthetic/catalog"
    modalities: list[str] = field(default_factory=list)  # embedding columns; [] = every one in the catalog
    pairs: str | None = None  # co-occurrence pairs -> the partner (behavioural) view
    pair_views: str | None = None  # where the joined item+partner table is written; None -> under the run
    join_partitions: int = 16  # hash partitions of the Ray Data pair join
    # Items (by id hash) the pair view is built for, and so trained on. The view holds ~(1 + 2 pairs per
    # item) rows of two embeddings per catalog item: a run that consumes only part of it (few steps
    # over a huge catalog) can build that part alone.
    pair_view_fraction: float = 1.0
    holdout_fraction: float = 0.01  # items held back (by item_id hash) for the end-of-training SID metrics
    holdout_max_items: int = 20_000
    shuffle_files: bool = True  # new file order every epoch (seeded)
    shuffle_buffer: int = 16_384  # rows in each worker's local shuffle buffer (0 = off)
    seed: int = 0
    # Ray Data hands blocks to the workers in arrival order, so batches (and with them the k-means
    # init and the weights) differ run to run. True: blocks keep their order (preserve_order) and are
    # split without locality, so the same inputs and seed give the same tokenizer; blocks then wait
    # for earlier ones, which can cost throughput on a cluster.
    deterministic: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_fraction < 0.5:
            raise ValueError(f"holdout_fraction must be in [0, 0.5), got {self.holdout_fraction}")
        if not 0.0 < self.pair_view_fraction <= 1.0:
            raise ValueError(f"pair_view_fraction must be in (0, 1], got {self.pair_view_fraction}")
        if self.join_partitions < 1 or self.holdout_max_items < 0 or self.shuffle_buffer < 0:
            raise ValueError("join_partitions must be >= 1; holdout_max_items and shuffle_buffer >= 0")


@dataclass
class TokenizerTrainConfig:
    """Ray Train DDP settings. ``batch_size`` is the GLOBAL batch: every worker takes
    ``batch_size / num_workers`` rows and the contrastive loss sees all of them as negatives."""

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: int = 1
    torch_threads: int = 0  # per worker; 0 = cpus_per_worker
    batch_size: int = 8192
    epochs: int = 1
    max_steps: int = 0  # 0 = epochs x (rows // batch_size)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # GPU only
    log_every: int = 10
    checkpoint_every: int = 100
    num_to_keep: int = 2
    max_failures: int = 0

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"train.num_workers must be >= 1, got {self.num_workers}")
        if self.batch_size < 2 or self.batch_size % self.num_workers:
            raise ValueError(
                f"train.batch_size ({self.batch_size}) must be >= 2 and divisible by train.num_workers "
                f"({self.num_workers}): every worker takes an equal share of the global batch"
            )
        if self.epochs < 1 or self.max_steps < 0:
            raise ValueError("train.epochs must be >= 1 and train.max_steps >= 0")
        if self.lr <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("train.lr must be > 0 and train.min_lr_ratio in [0, 1]")
        if min(self.log_every, self.checkpoint_every, self.num_to_keep) < 1:
            raise ValueError("train.log_every, checkpoint_every and num_to_keep must be >= 1")
        if self.mixed_precision != "no" and not self.use_gpu:
            raise ValueError("train.mixed_precision needs train.use_gpu=true (CPU trains in fp32)")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.max_failures < 0:
            raise ValueError("train.warmup_steps, grad_clip and max_failures must be >= 0")


@dataclass
class TokenizerJobConfig:
    """``jobs/train_tokenizer.py``: distributed tokenizer training."""

    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    run: RunSection = field(default_factory=RunSection)
    storage: StorageConfig = field(default_factory=StorageConfig)
