"""64-bit row fingerprints, vectorised: embedding content hashes and partition keys.

splitmix64-style mixing in numpy (wrapping uint64 arithmetic), so hashing a batch costs a few
vector passes, never a Python loop over rows. Deterministic across machines and runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser of a uint64 array (a bijection with good avalanche)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def combine(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Hash of several equal-length integer columns (order matters)."""
    h = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in columns:
            h = mix64(h ^ col.astype(np.int64).view(np.uint64))
    return h


def embedding_hash(matrices: Sequence[np.ndarray]) -> np.ndarray:
    """int64 fingerprint per row of the raw float32 bytes of all given (N, d) matrices.

    NaN rows (a missing modality) hash consistently; any changed bit changes the hash.
    """
    words = []
    for m in matrices:
        m = np.ascontiguousarray(m, dtype=np.float32)
        if m.shape[1] % 2:  # pad to whole 64-bit words
            m = np.concatenate([m, np.zeros((m.shape[0], 1), np.float32)], axis=1)
        words.append(m.view(np.uint64))
    flat = np.concatenate(words, axis=1) if len(words) > 1 else words[0]
    h = np.full(flat.shape[0], np.uint64(len(matrices)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(flat.shape[1]):
            h = mix64(h ^ flat[:, j])
    return h.view(np.int64)


def partition_of(columns: Sequence[np.ndarray], num_partitions: int) -> np.ndarray:
    """Hash partition (0..P-1) of rows keyed by the given integer columns."""
    return (combine(columns) % np.uint64(num_partitions)).astype(np.int64)
