"""SASRec's full-catalog ranking, and the exported model it is loaded from.

An exported model is a directory like the SID model's (``model.pt`` + ``config.json``), with the
model section, the data section and the item catalog it indexes (its size and fingerprint).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simcit_dist.config_loader import build, to_dict
from simcit_dist.recommender.config import DataConfig, EvalConfig
from simcit_dist.recommender.export import CONFIG_FILE, MODEL_FILE, model_dir
from simcit_dist.recommender.sasrec.batches import left_align
from simcit_dist.recommender.sasrec.config import SasrecModelConfig
from simcit_dist.recommender.sasrec.model import SasrecModel
from simcit_dist.storage import Location, StorageConfig, read_bytes, read_json

KIND = "sasrec"


@dataclass
class SasrecMeta:
    model: SasrecModelConfig
    data: DataConfig
    num_items: int
    items_version: str  # fingerprint of the item catalog: item index i means the same item only within it

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "model": to_dict(self.model), "data": to_dict(self.data), "num_items": self.num_items,
                "items_version": self.items_version}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> SasrecMeta:
        if data.get("kind") != KIND:
            raise ValueError(f"{where}: not a SASRec model (kind {data.get('kind')!r})")
        return cls(build(SasrecModelConfig, data["model"]), build(DataConfig, data["data"]), int(data["num_items"]),
                   str(data["items_version"]))

    def build_model(self) -> SasrecModel:
        return SasrecModel(self.model, self.num_items, self.data.max_history)


def load_sasrec_meta(uri: str | Location, storage: StorageConfig | None = None) -> SasrecMeta:
    loc = model_dir(uri, storage)
    return SasrecMeta.from_dict(read_json(loc.child(CONFIG_FILE)), loc.uri)


def load_sasrec(uri: str | Location, storage: StorageConfig | None = None) -> tuple[SasrecModel, SasrecMeta]:
    """Rebuild an exported SASRec (eval mode, CPU)."""
    loc = model_dir(uri, storage)
    meta = SasrecMeta.from_dict(read_json(loc.child(CONFIG_FILE)), loc.uri)
    model = meta.build_model()
    model.load_state_dict(torch.load(io.BytesIO(read_bytes(loc.child(MODEL_FILE))), map_location="cpu",
                                     weights_only=True))
    return model.eval(), meta


class SasrecRanker:
    """A :class:`~simcit_dist.recommender.evaluation.Ranker`: every catalog item scored, top-K kept.

    No item is excluded (not even the history's), as the SID model's beam search excludes none."""

    def __init__(self, model: SasrecModel, device: str | torch.device = "cpu", batch_size: int = 256) -> None:
        self.model, self.device, self.batch_size = model, torch.device(device), batch_size

    @torch.no_grad()
    def rank(self, histories: np.ndarray, k: int) -> np.ndarray:
        out = np.empty((len(histories), min(k, self.model.num_items)), dtype=np.int64)
        for lo in range(0, len(histories), self.batch_size):
            items, lengths = left_align(histories[lo:lo + self.batch_size])
            state = self.model.last_states(torch.from_numpy(items).to(self.device),
                                           torch.from_numpy(lengths).to(self.device))
            out[lo:lo + len(items)] = torch.topk(self.model.scores(state), out.shape[1]).indices.cpu().numpy()
        return out


def load_sasrec_ranker(model_uri: str, storage: StorageConfig | None, cfg: EvalConfig) -> SasrecRanker:
    """An exported SASRec as a ranker (in an evaluation actor: CPU or its GPU)."""
    device = "cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu"
    model, _ = load_sasrec(model_uri, storage)
    return SasrecRanker(model.to(device), device)
