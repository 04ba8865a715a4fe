"""Best-epoch selection and early stopping on a validation score (higher is better).

The state lives in :class:`~simcit_dist.train.state.TrainState` (``best_score``, ``best_epoch``,
``epochs_since_best``), which every checkpoint saves, so a resumed run keeps the best-so-far
score and the patience it has used: killing and resuming a run stops it at the same epoch as an
uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

from simcit_dist.train.state import TrainState


@dataclass(frozen=True)
class EarlyStopping:
    patience: int = 0  # epochs without improvement before stopping; 0 = never stop early
    min_delta: float = 0.0  # an epoch improves only if it beats the best by more than this

    def __post_init__(self) -> None:
        if self.patience < 0 or self.min_delta < 0:
            raise ValueError(f"patience and min_delta must be >= 0, got {self.patience}, {self.min_delta}")

    def update(self, state: TrainState, epoch: int, score: float) -> bool:
        """Record ``score`` of (1-based) ``epoch``; True when it is the new best.

        A NaN score (no validation examples) never improves; the first finite score always does.
        """
        improved = score == score and (state.best_score is None or score > state.best_score + self.min_delta)
        if improved:
            state.best_score, state.best_epoch, state.epochs_since_best = float(score), epoch, 0
        else:
            state.epochs_since_best += 1
        return improved

    def should_stop(self, state: TrainState) -> bool:
        return self.patience > 0 and state.epochs_since_best >= self.patience
