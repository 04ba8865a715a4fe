"""Best-epoch selection and early stopping: a metric that peaks at epoch k selects k and stops at
k + patience, and a resume from any checkpoint in between stops at the same epoch."""

from __future__ import annotations

import math

import pytest

from simcit_dist.train.early_stopping import EarlyStopping
from simcit_dist.train.state import TrainState, state_from_json, state_to_json

# Peaks at epoch 4 (0.30); epoch 6 beats it by less than min_delta = 0.01.
SCORES = [0.10, 0.20, 0.25, 0.30, 0.28, 0.305, 0.29, 0.27, 0.26]


def _run(stopper: EarlyStopping, state: TrainState, scores: list[float], start: int = 0) -> int:
    """Epochs (1-based) run until the stopper says stop; returns the last epoch trained."""
    for epoch in range(start + 1, len(scores) + 1):
        stopper.update(state, epoch, scores[epoch - 1])
        if stopper.should_stop(state):
            return epoch
    return len(scores)


def test_peak_is_selected_and_training_stops_after_patience() -> None:
    state = TrainState()
    last = _run(EarlyStopping(patience=3, min_delta=0.01), state, SCORES)
    assert (state.best_epoch, state.best_score, last) == (4, 0.30, 7)


def test_without_min_delta_the_small_gain_counts_and_patience_zero_never_stops() -> None:
    state = TrainState()
    assert _run(EarlyStopping(patience=3), state, SCORES) == 9 and state.best_epoch == 6
    state = TrainState()
    assert _run(EarlyStopping(patience=0), state, SCORES) == len(SCORES) and state.best_epoch == 6


@pytest.mark.parametrize("kill_after", [1, 4, 5, 6])
def test_resume_keeps_best_so_far_and_patience(kill_after: int) -> None:
    stopper = EarlyStopping(patience=3, min_delta=0.01)
    state = TrainState()
    for epoch in range(1, kill_after + 1):
        stopper.update(state, epoch, SCORES[epoch - 1])
    state.epoch = kill_after
    resumed = state_from_json(state_to_json(state))  # what the checkpoint's state.json gives back
    assert _run(stopper, resumed, SCORES, start=resumed.epoch) == 7 and resumed.best_epoch == 4


def test_nan_never_improves_and_bad_settings_fail() -> None:
    state = TrainState()
    stopper = EarlyStopping(patience=2)
    assert not stopper.update(state, 1, math.nan) and state.best_epoch == 0
    assert stopper.update(state, 2, 0.0) and state.best_epoch == 2
    with pytest.raises(ValueError, match="patience and min_delta must be >= 0"):
        EarlyStopping(patience=-1)
