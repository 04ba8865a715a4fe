"""Embedding fingerprints: the vectorised hash equals a plain per-row reference, and its values
are pinned (published SID tables store them; the nightly run compares against them)."""

from __future__ import annotations

import numpy as np

from simcit_dist.data.fingerprint import embedding_hash

MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _reference(matrices: list[np.ndarray]) -> list[int]:
    """Row by row in Python integers: the row's float32 bytes (each matrix padded to whole 64-bit
    words) as little-endian words, folded by splitmix64 from the number of matrices."""
    out = []
    for r in range(matrices[0].shape[0]):
        data = b""
        for m in matrices:
            row = m[r].astype(np.float32).tobytes()
            data += row + b"\0" * (len(row) % 8)
        h = len(matrices)
        for i in range(0, len(data), 8):
            h = _mix(h ^ int.from_bytes(data[i:i + 8], "little"))
        out.append(h - (1 << 64) if h >> 63 else h)
    return out


def test_matches_reference_on_odd_dims_nan_rows_and_several_matrices() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 8)).astype(np.float32)
    b = rng.normal(size=(50, 5)).astype(np.float32)  # odd: padded
    b[7] = np.nan  # a missing modality
    assert embedding_hash([a]).tolist() == _reference([a])
    assert embedding_hash([a, b]).tolist() == _reference([a, b])
    assert embedding_hash([b]).tolist() == _reference([b])


def test_any_changed_bit_changes_the_hash() -> None:
    a = np.random.default_rng(1).normal(size=(4, 16)).astype(np.float32)
    flipped = a.copy()
    flipped.view(np.uint32)[2, 9] ^= 1
    before, after = embedding_hash([a]), embedding_hash([flipped])
    assert before[2] != after[2] and (np.delete(before, 2) == np.delete(after, 2)).all()


def test_values_are_pinned() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    y = np.array([[1.5, np.nan, 2.0]] * 3, np.float32)
    y[1] = np.nan
    assert embedding_hash([x]).tolist() == [4045935182261783057, 6062583109543134733, -8511038049593939636]
    assert embedding_hash([x, y]).tolist() == [-5790076371408944672, -3908196601365630457, -7673942467152557524]
