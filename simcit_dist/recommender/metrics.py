"""Item-level ranking metrics with one held-out item per example.

The recommender returns a ranked list of *items* (decoded SIDs mapped back through the table);
the example's ``rank`` is the 0-based position of the held-out item in that list, or -1 when
it is absent. With a single relevant item the ideal DCG is 1, so

    Recall@K = 1[rank < K]        NDCG@K = 1[rank < K] / log2(rank + 2)

averaged over examples. Sums (not means) travel between workers, so shards merge exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def target_ranks(ranked_items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(B, K) ranked item indices (-1 padded), (B,) targets -> (B,) rank of the target or -1."""
    hit = ranked_items == targets[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1).astype(np.int64)


def metric_sums(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Sums of Recall@K and NDCG@K over examples, plus ``count``."""
    ranks = np.asarray(ranks, dtype=np.int64)
    found = ranks >= 0
    gain = np.where(found, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    out: dict[str, float] = {"count": float(len(ranks))}
    for k in ks:
        hit = found & (ranks < k)
        out[f"recall@{k}"] = float(hit.sum())
        out[f"ndcg@{k}"] = float(gain[hit].sum())
    return out


def merge_sums(parts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, 0.0) + float(value)
    return out


def finalize(sums: Mapping[str, float]) -> dict[str, float]:
    """Means from sums (0.0 for an empty set), keeping ``count``."""
    count = float(sums.get("count", 0.0))
    return {key: (count if key == "count" else (float(value) / count if count else 0.0))
            for key, value in sums.items()}


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    return finalize(metric_sums(ranks, ks))


def reference_metrics(recommended: Sequence[Sequence[int]], targets: Sequence[int],
                      ks: Sequence[int]) -> dict[str, float]:
    """Plain-Python Recall/NDCG (textbook DCG / IDCG, one relevant item) for testing the above."""
    out = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")}
    for rec, target in zip(recommended, targets):
        for k in ks:
            top = list(rec)[:k]
            dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(top) if item == target)
            idcg = 1.0  # one relevant item, ideally at position 0
            out[f"recall@{k}"] += 1.0 if target in top else 0.0
            out[f"ndcg@{k}"] += dcg / idcg
    n = len(targets)
    return {key: value / n if n else 0.0 for key, value in out.items()}


def popularity_ranking(counts: np.ndarray, k: int) -> np.ndarray:
    """(N,) training counts -> (k,) most popular item indices (ties by lower index)."""
    order = np.lexsort((np.arange(len(counts)), -counts))
    return order[:k]
