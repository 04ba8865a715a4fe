"""Id-hash samples shared by every job and worker without coordination: the held-back split of
tokenizer training and the anchors of the pair view depend on the item id alone."""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive ids evenly
_ANCHOR_SALT = 0x5BD1E995  # makes the pair-view sample independent of the held-back split


def id_fraction_mask(item_ids: np.ndarray, fraction: float, salt: int = 0) -> np.ndarray:
    """True for about ``fraction`` of the ids, chosen by a hash of the id (and ``salt``) alone."""
    if fraction <= 0:
        return np.zeros(len(item_ids), dtype=bool)
    with np.errstate(over="ignore"):
        h = ((item_ids.astype(np.uint64) ^ np.uint64(salt)) * _GOLDEN) >> np.uint64(40)
    return (h % np.uint64(1_000_000)) < np.uint64(round(fraction * 1_000_000))


def holdout_mask(item_ids: np.ndarray, fraction: float) -> np.ndarray:
    """True for items held back from training. Depends only on the id, so every worker, epoch
    and job (training, benchmarks) agrees on the split without any shared state."""
    return id_fraction_mask(item_ids, fraction)


def anchor_mask(item_ids: np.ndarray, fraction: float) -> np.ndarray:
    """True for the items the pair view is built for (all of them at ``fraction`` 1)."""
    return id_fraction_mask(item_ids, fraction, _ANCHOR_SALT)

