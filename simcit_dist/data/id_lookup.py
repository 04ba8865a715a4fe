"""Where ids sit in a sorted id array: the one membership join of the data jobs (prepare's unknown
items, the pair view's partners, bring-your-own embeddings), done by ``searchsorted``."""

from __future__ import annotations

import numpy as np


def find_sorted(sorted_keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each id in ``sorted_keys``, found mask); positions of ids not found are
    arbitrary valid indices. ``sorted_keys`` may be empty."""
    if len(sorted_keys) == 0:
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, ids), len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == ids
