"""Gumbel-softmax temperature annealing.

The SimCIT ablation finds annealing imperative (a fixed high temperature never commits to codes,
hard search from the start collapses), so the temperature starts soft and decays to a floor.
"""

from __future__ import annotations

import math

from simcit_dist.tokenizer.config import TemperatureSchedule


def anneal_progress(schedule: TemperatureSchedule, step: int, total_steps: int) -> float:
    """Fraction in [0, 1] of the annealing horizon covered at ``step`` (0-based)."""
    horizon = schedule.anneal_steps if schedule.anneal_steps > 0 else total_steps
    if horizon <= 1:
        return 1.0 if step > 0 else 0.0
    return min(max(step / (horizon - 1), 0.0), 1.0)


def gumbel_temperature(schedule: TemperatureSchedule, step: int, total_steps: int) -> float:
    """Temperature at ``step``: ``start`` at step 0, ``floor`` from the end of the horizon on.

    - linear: start + (floor - start) * p
    - exponential: start * (floor / start) ** p (a constant ratio per step)
    - cosine: floor + (start - floor) * (1 + cos(pi * p)) / 2
    """
    p = anneal_progress(schedule, step, total_steps)
    start, floor = schedule.start, schedule.floor
    if schedule.kind == "linear":
        return start + (floor - start) * p
    if schedule.kind == "exponential":
        return start * (floor / start) ** p
    if schedule.kind == "cosine":
        return floor + (start - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"temperature kind must be linear, exponential or cosine, got {schedule.kind!r}")
