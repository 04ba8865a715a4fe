from __future__ import annotations

import math

import numpy as np
import pytest

from simcit_dist.recommender.metrics import (
    finalize,
    merge_sums,
    metric_sums,
    popularity_ranking,
    ranking_metrics,
    reference_metrics,
    target_ranks,
)


def test_hand_computed_recall_and_ndcg() -> None:
    recommended = np.array([
        [7, 3, 9, 1],   # target 7 at rank 0
        [2, 5, 8, 4],   # target 8 at rank 2
        [6, 1, 0, -1],  # target 4 absent (list padded)
        [4, 9, 2, 3],   # target 3 at rank 3
    ])
    targets = np.array([7, 8, 4, 3])
    ranks = target_ranks(recommended, targets)
    assert ranks.tolist() == [0, 2, -1, 3]
    m = ranking_metrics(ranks, [1, 3, 4])
    # Recall@1 = 1/4; @3 = 2/4; @4 = 3/4.
    assert m["recall@1"] == pytest.approx(0.25)
    assert m["recall@3"] == pytest.approx(0.5)
    assert m["recall@4"] == pytest.approx(0.75)
    # NDCG: rank 0 -> 1, rank 2 -> 1/log2(4) = 0.5, rank 3 -> 1/log2(5) = 0.43068.
    assert m["ndcg@1"] == pytest.approx(1 / 4)
    assert m["ndcg@3"] == pytest.approx((1 + 0.5) / 4)
    assert m["ndcg@4"] == pytest.approx((1 + 0.5 + 1 / math.log2(5)) / 4)
    assert m["count"] == 4
    ref = reference_metrics(recommended.tolist(), targets.tolist(), [1, 3, 4])
    for key, value in ref.items():
        assert m[key] == pytest.approx(value)


def test_vectorized_metrics_match_reference_on_random_lists() -> None:
    rng = np.random.default_rng(0)
    lists = np.stack([rng.permutation(50)[:20] for _ in range(200)])
    targets = rng.integers(0, 50, 200)
    ks = [5, 10, 20]
    got = ranking_metrics(target_ranks(lists, targets), ks)
    ref = reference_metrics(lists.tolist(), targets.tolist(), ks)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-12)
    assert 0.0 < got["recall@5"] < got["recall@10"] < got["recall@20"] <= 1.0


def test_sums_merge_exactly_across_shards() -> None:
    ranks = np.array([0, 5, -1, 12, 3, 1, 19, -1])
    whole = finalize(metric_sums(ranks, [10, 20]))
    parts = finalize(merge_sums([metric_sums(ranks[:3], [10, 20]), metric_sums(ranks[3:], [10, 20])]))
    assert parts == pytest.approx(whole)
    assert finalize(metric_sums(np.array([], dtype=np.int64), [10]))["recall@10"] == 0.0


def test_popularity_ranking_breaks_ties_by_index() -> None:
    assert popularity_ranking(np.array([3, 5, 5, 0, 7]), 4).tolist() == [4, 1, 2, 0]
