"""A trained recommender as a self-describing directory: ``model.pt`` + ``config.json``.

Written by rank 0 into every training checkpoint (``<checkpoint>/model/``) and copied to the
run's output; evaluation rebuilds the model from it without DeepSpeed. ``config.json`` holds the
model section, the SID layout and table version it was trained on, and the data section (so
evaluation uses the same split and history length).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from simcit_dist.config_loader import build, to_dict
from simcit_dist.recommender.catalog import SidLayout
from simcit_dist.recommender.config import DataConfig, ModelConfig
from simcit_dist.recommender.model import TigerModel
from simcit_dist.storage import (
    Location,
    StorageConfig,
    exists,
    read_bytes,
    read_json,
    resolve,
    write_bytes,
    write_json,
)

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"


@dataclass
class ModelMeta:
    model: ModelConfig
    data: DataConfig
    layout: SidLayout
    sid_root: str
    sid_version: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": to_dict(self.model), "data": to_dict(self.data), "layout": self.layout.to_dict(),
                "sid_root": self.sid_root, "sid_version": self.sid_version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMeta:
        return cls(build(ModelConfig, data["model"]), build(DataConfig, data["data"]),
                   SidLayout.from_dict(data["layout"]), data["sid_root"], data["sid_version"])


class ExportMeta(Protocol):
    """What an exported model's ``config.json`` is written from (:class:`ModelMeta`, SASRec's meta)."""

    def to_dict(self) -> dict[str, Any]: ...


def save_model(out: Location, state_dict: dict[str, torch.Tensor], meta: ExportMeta) -> None:
    """Write fp32 weights and metadata under ``out`` (any model family's exported directory)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().float().cpu() if v.is_floating_point() else v.cpu() for k, v in state_dict.items()},
               buffer)
    write_bytes(out.child(MODEL_FILE), buffer.getvalue())
    write_json(out.child(CONFIG_FILE), meta.to_dict())


def model_dir(uri: str | Location, storage: StorageConfig | None = None) -> Location:
    """An exported model dir, or a checkpoint dir that holds one in ``model/``."""
    loc = uri if isinstance(uri, Location) else resolve(uri, storage)
    for candidate in (loc, loc.child("model")):
        if exists(candidate.child(CONFIG_FILE)) and exists(candidate.child(MODEL_FILE)):
            return candidate
    raise FileNotFoundError(f"{loc.uri}: no trained model ({CONFIG_FILE} + {MODEL_FILE}, directly or under model/)")


def load_meta(uri: str | Location, storage: StorageConfig | None = None) -> ModelMeta:
    """What a trained model was built and trained with (no weights read)."""
    return ModelMeta.from_dict(read_json(model_dir(uri, storage).child(CONFIG_FILE)))


def load_model(uri: str | Location, storage: StorageConfig | None = None) -> tuple[TigerModel, ModelMeta]:
    """Rebuild a trained model (eval mode, CPU) from an exported model or checkpoint directory."""
    loc = model_dir(uri, storage)
    meta = load_meta(loc)
    model = TigerModel(meta.model, meta.layout, meta.data.max_history)
    state = torch.load(io.BytesIO(read_bytes(loc.child(MODEL_FILE))), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), meta
