"""Typed configs of the generative recommender (model, data split, training, evaluation) and its jobs.

The DeepSpeed section is DeepSpeed's own JSON config written as YAML (``train.deepspeed``), so
ZeRO stage, precision and clipping read exactly as in DeepSpeed's docs; the batch size and
optimizer stay ours (``train.batch_size``, the global batch, and ``train.lr``) and are filled in when missing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from simcit_dist.storage import StorageConfig
from simcit_dist.train.config import RunSection, TrainSection

SplitName = Literal["valid", "test"]


@dataclass
class ModelConfig:
    """TIGER-style encoder-decoder (defaults follow TIGER: 4+4 layers, d_model 128, 6 heads of 64)."""

    d_model: int = 128
    num_heads: int = 6
    head_dim: int = 64  # T5-style: heads * head_dim need not equal d_model
    ffn_dim: int = 1024
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    dropout: float = 0.1
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("d_model", "num_heads", "head_dim", "ffn_dim", "num_encoder_layers", "num_decoder_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class DataConfig:
    """How interactions become per-user sequences and train/valid/test examples.

    ``leave_one_out`` (TIGER/LETTER on Amazon): per user, the last item is the test target, the
    one before it the validation target, earlier positions are training targets.
    ``chrono`` (SimCIT): per user, the first ``train_frac`` of the chronological sequence gives
    training targets, the next ``valid_frac`` validation targets and the rest test targets; each
    target's history is everything before it.
    """

    split: Literal["leave_one_out", "chrono"] = "leave_one_out"
    max_history: int = 20  # items of history fed to the encoder (the most recent ones)
    min_interactions: int | None = None  # users with fewer (after dropping items without SIDs) are skipped;
    #                                        None -> 3 for leave_one_out, 10 for chrono
    train_frac: float = 0.8
    valid_frac: float = 0.1
    on_missing_sid: Literal["drop", "error"] = "drop"  # interactions whose item has no SID
    num_partitions: int = 16  # hash partitions (and output files) of the per-user sequence table

    def __post_init__(self) -> None:
        if self.max_history < 1:
            raise ValueError(f"data.max_history must be >= 1, got {self.max_history}")
        if self.num_partitions < 1:
            raise ValueError(f"data.num_partitions must be >= 1, got {self.num_partitions}")
        if not (0.0 < self.train_frac < 1.0 and 0.0 < self.valid_frac < 1.0
                and self.train_frac + self.valid_frac < 1.0):
            raise ValueError(f"data.train_frac ({self.train_frac}) and data.valid_frac ({self.valid_frac}) must be "
                             "in (0, 1) with a sum < 1")
        if self.min_interactions is not None and self.min_interactions < 3:
            raise ValueError("data.min_interactions must be >= 3 (a validation and a test target both need "
                             f"history), got {self.min_interactions}")

    @property
    def effective_min_interactions(self) -> int:
        if self.min_interactions is not None:
            return self.min_interactions
        return 3 if self.split == "leave_one_out" else 10


PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class RecommenderTrainConfig(TrainSection):
    """``train:`` of the recommender (the shared keys: :class:`TrainSection`). ``batch_size`` is the
    GLOBAL batch; each worker's DeepSpeed micro batch is ``batch_size / num_workers``."""

    epochs: int = 10
    batch_size: int = 512
    weight_decay: float = 0.01
    seed: int = 0
    max_steps_per_epoch: int | None = None  # cap for smoke tests
    log_every: int = 50
    # The test split is evaluated on the checkpoint of the best validation epoch (eval.epoch_metric_k,
    # on eval.max_epoch_examples users). patience > 0 also stops training after that many epochs
    # without an improvement of more than min_delta.
    patience: int = 0
    min_delta: float = 0.0
    # DeepSpeed JSON config (as YAML). Missing micro batch / accumulation are filled from above.
    deepspeed: dict[str, Any] = field(default_factory=lambda: {
        "zero_optimization": {"stage": 2},
        "bf16": {"enabled": False},
        "gradient_clipping": 1.0,
    })

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patience < 0 or self.min_delta < 0:
            raise ValueError(f"train.patience and train.min_delta must be >= 0, got {self.patience}, {self.min_delta}")
        stage = self.zero_stage
        if stage not in (0, 1, 2, 3):
            raise ValueError(f"train.deepspeed.zero_optimization.stage must be one of [0, 1, 2, 3], got {stage!r}")
        if self.precision == "fp16" and not self.use_gpu:
            raise ValueError("train.deepspeed.fp16 needs train.use_gpu=true; use fp32 (or bf16) on CPU")
        micro = self.deepspeed.get("train_micro_batch_size_per_gpu")
        if micro is not None and micro != self.per_worker_batch:
            raise ValueError(f"train.deepspeed.train_micro_batch_size_per_gpu ({micro}) must equal train.batch_size / "
                             f"train.num_workers ({self.per_worker_batch}) or be left out")
        total = self.deepspeed.get("train_batch_size")
        if total is not None and total != self.batch_size:
            raise ValueError(f"train.deepspeed.train_batch_size ({total}) must equal train.batch_size "
                             f"({self.batch_size}) or be left out")
        if "optimizer" in self.deepspeed or "scheduler" in self.deepspeed:
            raise ValueError("train.deepspeed must not set 'optimizer'/'scheduler': the loop passes a torch "
                             "AdamW (train.lr, train.weight_decay) and its warm-up schedule")

    @property
    def zero_stage(self) -> int:
        zero = self.deepspeed.get("zero_optimization", {}) or {}
        return int(zero.get("stage", 0)) if isinstance(zero, dict) else -1

    @property
    def precision(self) -> str:
        enabled = [p for p in ("bf16", "fp16") if (self.deepspeed.get(p) or {}).get("enabled", False)]
        if len(enabled) > 1:
            raise ValueError("train.deepspeed enables both bf16 and fp16; pick one")
        return enabled[0] if enabled else "fp32"

    def deepspeed_config(self) -> dict[str, Any]:
        """The dict handed to ``deepspeed.initialize`` (a copy, with our batch settings filled in)."""
        ds = copy.deepcopy(self.deepspeed)
        ds.setdefault("train_micro_batch_size_per_gpu", self.per_worker_batch)
        ds.setdefault("gradient_accumulation_steps", 1)
        ds.setdefault("steps_per_print", 1 << 30)  # our loop logs progress; keep DeepSpeed's quiet
        if self.zero_stage == 3:
            # The loop exports consolidated weights with every checkpoint (for evaluation).
            ds["zero_optimization"].setdefault("stage3_gather_16bit_weights_on_model_save", True)
        return ds


@dataclass
class EvalConfig:
    beam_size: int = 50
    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    constrained: bool = True  # prefix-trie constrained beam search (False: any code sequence)
    batch_size: int = 64  # examples per beam-search batch
    num_workers: int = 2  # Ray Data actors for distributed evaluation
    cpus_per_worker: int = 1
    use_gpu: bool = False
    epoch_metric_k: int = 10  # the Recall@k reported each epoch
    max_epoch_examples: int | None = 2000  # validation examples scored each epoch (None: all)
    max_users: int | None = None  # final evaluation on the first N users only (None: all)

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"eval.ks must be a non-empty list of positive integers, got {self.ks}")
        if self.beam_size < max(self.ks):
            raise ValueError(f"eval.beam_size ({self.beam_size}) must be >= the largest K in eval.ks "
                             f"({max(self.ks)}): a beam returns at most beam_size items")
        if self.epoch_metric_k not in self.ks:
            raise ValueError(f"eval.epoch_metric_k ({self.epoch_metric_k}) must be one of eval.ks {self.ks}")
        for name in ("batch_size", "num_workers", "cpus_per_worker"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class RecommenderConfig:
    """Everything the library needs to train and evaluate one recommender on one SID table."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: RecommenderTrainConfig = field(default_factory=RecommenderTrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class RecommenderRunSection(RunSection):
    """``run:`` of the recommender: where Ray Train keeps its checkpoints (see :class:`RunSection`)."""

    name: str = "recommender"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_to_keep < 2:
            raise ValueError(f"run.num_to_keep must be >= 2 for a recommender run, got {self.num_to_keep}: Ray keeps "
                             "the latest checkpoint besides the best ones, so with 1 a worse last epoch evicts the "
                             "best epoch that evaluation loads")


@dataclass
class TrainRecommenderJobConfig:
    """``jobs/train_recommender.py``: train on one SID table, validate each epoch, test at the end."""

    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "training": "the section is train: now, and train.batch_size is the GLOBAL batch (the old per-worker "
                    "training.batch_size x train.num_workers); training.log_every_steps is train.log_every",
    }

    interactions: str = "runs/data/synthetic/interactions"
    sid_root: str = "runs/sids/simcit"
    sid_version: str | None = None  # None -> the version LATEST points at (pinned for the whole run)
    output: str = "runs/recommender/demo"  # metrics.json, plots, sequences, exported model
    run: RecommenderRunSection = field(default_factory=RecommenderRunSection)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: RecommenderTrainConfig = field(default_factory=RecommenderTrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def recommender(self) -> RecommenderConfig:
        return RecommenderConfig(model=self.model, data=self.data, train=self.train, eval=self.eval)


@dataclass
class EvaluateJobConfig:
    """``jobs/evaluate.py``: score an exported model (or a checkpoint) on validation/test."""

    model: str = "runs/recommender/demo/model"  # an exported model dir, or a checkpoint dir holding model/
    interactions: str = "runs/data/synthetic/interactions"
    sid_root: str = "runs/sids/simcit"
    sid_version: str | None = None  # None -> the version the model was trained on
    output: str = "runs/recommender/demo/eval"
    sequences: str | None = None  # reuse a built sequence table (e.g. <train output>/data/sequences); None: build
    splits: list[str] = field(default_factory=lambda: ["valid", "test"])
    data: DataConfig | None = None  # None -> the data section the model was trained with
    eval: EvalConfig = field(default_factory=EvalConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        bad = [s for s in self.splits if s not in ("valid", "test")]
        if bad or not self.splits:
            raise ValueError(f"splits must be a non-empty subset of ['valid', 'test'], got {self.splits}")
