"""SASRec on one rank of the shared Ray Train + DeepSpeed loop (:func:`~simcit_dist.recommender.trainer.fit`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from simcit_dist.recommender.evaluation import score_examples
from simcit_dist.recommender.examples import load_shard
from simcit_dist.recommender.export import save_model
from simcit_dist.recommender.sasrec.batches import SasrecBatch, sasrec_train_batches, training_windows
from simcit_dist.recommender.sasrec.config import SasrecConfig
from simcit_dist.recommender.sasrec.ranking import SasrecMeta, SasrecRanker, load_sasrec_meta
from simcit_dist.storage import Location, StorageConfig, resolve


@dataclass
class SasrecJob:
    """SASRec's training job (pickled into ``train_loop_config``)."""

    cfg: SasrecConfig
    sequences: str  # URI of the per-user sequence table (indexed by the item catalog below)
    num_items: int
    items_version: str
    storage: StorageConfig | None = None

    def __post_init__(self) -> None:
        self.sequences = resolve(self.sequences, self.storage).uri  # absolute in the driver, as WorkerJob's

    def open(self, rank: int, world: int) -> SasrecTask:
        return SasrecTask(self, rank, world)


class SasrecTask:
    """What the loop needs from SASRec: windows of this shard, full-softmax loss, full-ranking validation."""

    def __init__(self, job: SasrecJob, rank: int, world: int) -> None:
        cfg = self.cfg = job.cfg
        self.meta = SasrecMeta(cfg.model, cfg.data, job.num_items, job.items_version)
        self.seqs = load_shard(resolve(job.sequences, job.storage), cfg.data, rank, world)
        self.windows = training_windows(self.seqs, cfg.data)
        torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
        self.model = self.meta.build_model()

    def num_train_examples(self) -> int:
        return len(self.windows.user)

    def train_batches(self, batch_size: int, steps: int, epoch: int, rank: int) -> Iterator[SasrecBatch]:
        return sasrec_train_batches(self.seqs, self.windows, batch_size, steps, self.cfg.train.seed, epoch, rank)

    def loss(self, engine: Any, batch: SasrecBatch) -> torch.Tensor:
        return engine(batch.items.to(engine.device), batch.targets.to(engine.device))

    def validation_sums(self, engine: Any, limit: int | None) -> dict[str, float]:
        ranker = SasrecRanker(engine.module, engine.device)
        return score_examples(ranker, self.seqs, self.cfg.data, "valid", self.cfg.eval, limit=limit)

    def check_checkpoint(self, model_dir: str) -> None:
        check_items_version(model_dir, self.meta.items_version)

    def save_model(self, out: Location, weights: dict[str, torch.Tensor]) -> None:
        save_model(out, weights, self.meta)


def check_items_version(model_dir: str, items_version: str) -> None:
    """A run keeps the item catalog it started with: item index i means another item in another catalog."""
    found = load_sasrec_meta(model_dir).items_version
    if found != items_version:
        raise ValueError(f"this run was trained on item catalog {found!r}, not {items_version!r}: start a new "
                         "run.name")
