"""The loop state both trainers checkpoint (``TrainState``), and the one-file checkpoint of a
plain-PyTorch loop.

``save_state``/``load_state`` (the tokenizer): one file, ``state.pt``, with model (unwrapped),
optimizer, LR scheduler, global step, data position (epoch, batches consumed in that epoch) and
the metric history, so a resumed run continues the same LR/temperature curves and plots the
whole run. The recommender's DeepSpeed engine saves model and optimizer itself; it keeps only the
``TrainState`` beside them (``state_to_json``/``state_from_json``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

STATE_FILE = "state.pt"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken (the global step)
    epoch: int = 0
    step_in_epoch: int = 0  # batches of ``epoch`` already consumed
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)  # the step of every restore, in order
    baseline: dict[str, float] = field(default_factory=dict)  # metrics of the untrained model (step 0)
    # Best-epoch selection (train/early_stopping.py): the best validation score so far, its epoch
    # (1-based; 0 = none yet) and the epochs since, saved with every checkpoint so a resume keeps them.
    best_score: float | None = None
    best_epoch: int = 0
    epochs_since_best: int = 0


def state_to_json(state: TrainState) -> dict[str, Any]:
    return dict(state.__dict__)


def state_from_json(raw: dict[str, Any]) -> TrainState:
    """The state a checkpoint recorded (older recommender checkpoints called the step ``global_step``)."""
    raw = dict(raw)
    if "global_step" in raw:
        raw["step"] = raw.pop("global_step")
    return TrainState(**raw)


def save_state(directory: str, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, state: TrainState) -> None:
    payload: dict[str, Any] = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": state.__dict__,
    }
    tmp = os.path.join(directory, STATE_FILE + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, os.path.join(directory, STATE_FILE))


def load_state(directory: str, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler) -> TrainState:
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {directory} has no {STATE_FILE}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    state = TrainState(**payload["state"])
    state.resumed_from.append(state.step)
    return state
