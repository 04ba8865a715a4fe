"""Typed config of ``jobs/train_tokenizer.py``: data, model, Ray Train and run sections.

    cfg = load_config(TokenizerJobConfig, "conf/tokenizer.yaml", ["train.num_workers=4"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from simcit_dist.storage import StorageConfig
from simcit_dist.tokenizer.config import TokenizerConfig
from simcit_dist.train.config import RunSection, TrainSection


@dataclass
class TokenizerRunSection(RunSection):
    """``run:`` of the tokenizer job: Ray Train's run (see :class:`RunSection`) plus ``run_dir``, a
    local directory for the human-facing report (markdown, plots, metrics.json), and the artifact."""

    name: str = "tokenizer"
    run_dir: str = "runs/tokenizer"
    artifact: str | None = None  # final tokenizer; None -> <storage_path>/<name>/tokenizer

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
class TokenizerTrainConfig(TrainSection):
    """``train:`` of the tokenizer job (the shared keys: :class:`TrainSection`). ``batch_size`` is the
    GLOBAL batch: every worker takes ``batch_size / num_workers`` rows and the contrastive loss sees
    all of them as negatives."""

    batch_size: int = 8192
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    # > 0: train exactly this many steps, as many epochs as that takes (train.epochs is then ignored,
    # as in Hugging Face's Trainer); 0: train.epochs x (rows // batch_size) steps
    max_steps: int = 0
    min_lr_ratio: float = 0.1
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # GPU only
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 2:
            raise ValueError(f"train.batch_size must be >= 2, got {self.batch_size}")
        if self.max_steps < 0 or self.grad_clip < 0:
            raise ValueError("train.max_steps and train.grad_clip must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.checkpoint_every < 1:
            raise ValueError(f"train.checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.mixed_precision != "no" and not self.use_gpu:
            raise ValueError("train.mixed_precision needs train.use_gpu=true (CPU trains in fp32)")


@dataclass
class TokenizerJobConfig:
    """``jobs/train_tokenizer.py``: distributed tokenizer training."""

    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    run: TokenizerRunSection = field(default_factory=TokenizerRunSection)
    storage: StorageConfig = field(default_factory=StorageConfig)
