"""Typed configs of SASRec: the model section, and the job (data/train/eval as the SID model's)."""

from __future__ import annotations

from dataclasses import dataclass, field

from simcit_dist.recommender.config import (
    DataConfig,
    EvalConfig,
    RecommenderRunSection,
    RecommenderTrainConfig,
)
from simcit_dist.storage import StorageConfig


@dataclass
class SasrecModelConfig:
    """SASRec as RecBole sets it up for the Amazon benchmarks (2 layers, 2 heads, d 64, dropout 0.5).

    The history length is ``data.max_history`` (RecBole's MAX_ITEM_LIST_LENGTH, 50 there)."""

    hidden_dim: int = 64
    num_layers: int = 2
    num_heads: int = 2
    ffn_dim: int = 256
    dropout: float = 0.5  # on embeddings, attention and feed-forward (RecBole: hidden and attn dropout 0.5)
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "num_layers", "num_heads", "ffn_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"sasrec.model.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"sasrec.model.hidden_dim ({self.hidden_dim}) must be a multiple of num_heads "
                             f"({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"sasrec.model.dropout must be in [0, 1), got {self.dropout}")


def default_sasrec_data() -> DataConfig:
    return DataConfig(max_history=50)


def default_sasrec_train() -> RecommenderTrainConfig:
    # RecBole's SASRec: Adam, lr 1e-3, no weight decay; early stopping on validation (patience 10).
    return RecommenderTrainConfig(epochs=200, batch_size=256, lr=0.001, weight_decay=0.0, warmup_steps=0,
                                  patience=10)


@dataclass
class SasrecConfig:
    """What the library needs to train and evaluate SASRec. ``train.batch_size`` counts training
    *sequences* (windows of up to ``data.max_history`` targets each), not targets; ``eval.beam_size``
    and ``eval.constrained`` do not apply (SASRec ranks the whole catalog)."""

    model: SasrecModelConfig = field(default_factory=SasrecModelConfig)
    data: DataConfig = field(default_factory=default_sasrec_data)
    train: RecommenderTrainConfig = field(default_factory=default_sasrec_train)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class SasrecRunSection(RecommenderRunSection):
    name: str = "sasrec"


@dataclass
class TrainSasrecJobConfig:
    """``jobs/train_sasrec.py``: train SASRec on the interactions, validate each epoch, test the best."""

    interactions: str = "runs/data/synthetic/interactions"
    catalog: str = "runs/data/synthetic/catalog"  # the items SASRec ranks (its item_id column)
    output: str = "runs/sasrec/demo"  # metrics.json, report, sequences, exported model
    run: SasrecRunSection = field(default_factory=SasrecRunSection)
    model: SasrecModelConfig = field(default_factory=SasrecModelConfig)
    data: DataConfig = field(default_factory=default_sasrec_data)
    train: RecommenderTrainConfig = field(default_factory=default_sasrec_train)
    eval: EvalConfig = field(default_factory=EvalConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def sasrec(self) -> SasrecConfig:
        return SasrecConfig(model=self.model, data=self.data, train=self.train, eval=self.eval)
