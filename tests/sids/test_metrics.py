from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from simcit_dist.sids.metrics import (
    LevelUsage,
    SIDGroupStats,
    embedding_hit_rate,
    sid_keys,
    sid_metrics,
)

CODES = np.array([[0, 0], [0, 0], [0, 1], [1, 2], [1, 2], [1, 2]])  # SIDs (0,0) x2, (0,1) x1, (1,2) x3


def forge_gini(summary: list[tuple[int, int]]) -> float:
    """FORGE's calculate_gini.py: [(cnt, cnt_freq)] ascending by cnt; ranks count down from N."""
    n = sum(f for _, f in summary)
    dot, before = 0, 0
    for cnt, freq in summary:
        first, last = n - before, n - before - freq + 1
        dot += cnt * ((first + last) * freq // 2)
        before += freq
    total = sum(c * f for c, f in summary)
    return (n + 1) / n - 2 * dot / (n * total)


def pairwise_gini(x: np.ndarray) -> float:
    """The textbook mean-absolute-difference Gini, an independent reference."""
    x = x.astype(np.float64)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


def test_group_stats_by_hand() -> None:
    s = SIDGroupStats.from_codes(CODES, codebook_size=3)
    assert s.sizes.tolist() == [1, 2, 3] and s.freq.tolist() == [1, 1, 1]
    assert (s.num_items, s.num_unique, s.max_per_sid) == (6, 3, 3)
    assert s.collision_rate() == pytest.approx(5 / 6)  # all but the item alone in (0,1)
    assert s.duplicate_rate() == pytest.approx(0.5)
    # Gini of [1, 2, 3]: (1 + 2 + 1) * 2 / (2 * 9 * 2) = 2/9
    assert s.gini() == pytest.approx(2 / 9)
    assert forge_gini([(1, 1), (2, 1), (3, 1)]) == pytest.approx(2 / 9)
    assert SIDGroupStats.from_group_sizes(np.array([4, 4, 4])).gini() == pytest.approx(0.0)
    assert SIDGroupStats.from_group_sizes(np.ones(5, dtype=np.int64)).collision_rate() == 0.0
    empty = SIDGroupStats.empty()
    assert (empty.collision_rate(), empty.gini(), empty.num_unique, empty.max_per_sid) == (0.0, 0.0, 0, 0)


def test_gini_matches_forge_script_and_pairwise_definition_on_random_histograms() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        sizes = rng.integers(1, 40, size=int(rng.integers(1, 200)))
        stats = SIDGroupStats.from_group_sizes(sizes)
        summary = list(zip(stats.sizes.tolist(), stats.freq.tolist()))
        assert stats.gini() == pytest.approx(forge_gini(summary), abs=1e-12)
        assert stats.gini() == pytest.approx(pairwise_gini(sizes), abs=1e-12)


def test_level_usage_utilization_and_perplexity_by_hand() -> None:
    u = LevelUsage.from_codes(CODES, codebook_size=3)
    assert u.counts.tolist() == [[3, 3, 0], [2, 1, 3]]
    np.testing.assert_allclose(u.utilization(), [2 / 3, 1.0])
    h1 = -(1 / 3 * math.log(1 / 3) + 1 / 6 * math.log(1 / 6) + 1 / 2 * math.log(1 / 2))
    np.testing.assert_allclose(u.perplexity(), [2.0, math.exp(h1)])
    one = LevelUsage.from_codes(np.zeros((10, 1), dtype=np.int64), 4)
    assert one.perplexity().tolist() == [1.0]  # collapse: a single code
    uniform = LevelUsage.from_codes(np.arange(8)[:, None] % 4, 4)
    np.testing.assert_allclose(uniform.perplexity(), [4.0])
    assert LevelUsage.empty(2, 3).perplexity().tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        LevelUsage.from_codes(np.array([[3]]), 3)


def test_merging_partials_equals_the_whole() -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 6, size=(5000, 3))
    whole_usage = LevelUsage.from_codes(codes, 6)
    whole_groups = SIDGroupStats.from_codes(codes, 6)
    # usage: any split of the items (e.g. Ray Data blocks)
    blocks = np.array_split(codes[rng.permutation(len(codes))], 7)
    merged = LevelUsage.empty(3, 6)
    for block in blocks:
        merged = merged.merge(pickle.loads(pickle.dumps(LevelUsage.from_codes(block, 6))))
    assert np.array_equal(merged.counts, whole_usage.counts)
    np.testing.assert_allclose(merged.perplexity(), whole_usage.perplexity())
    # group stats: a split by SID (the partitions of a group-by), never splitting one SID's group
    keys = sid_keys(codes, 6)
    groups = SIDGroupStats.empty()
    for part in range(4):
        _, counts = np.unique(keys[keys % 4 == part], return_counts=True)
        groups = groups.merge(pickle.loads(pickle.dumps(SIDGroupStats.from_group_sizes(counts))))
    assert np.array_equal(groups.sizes, whole_groups.sizes) and np.array_equal(groups.freq, whole_groups.freq)
    for name in ("collision_rate", "gini", "duplicate_rate"):
        assert getattr(groups, name)() == pytest.approx(getattr(whole_groups, name)())


def test_sid_keys_are_unique_per_sid_and_refuse_overflow() -> None:
    codes = np.array([[0, 1], [1, 0], [1, 1], [0, 1]])
    assert sid_keys(codes, 2).tolist() == [1, 2, 3, 1]
    with pytest.raises(ValueError, match="int64"):
        sid_keys(np.zeros((1, 8), dtype=np.int64), 256)


def test_embedding_hit_rate_by_hand() -> None:
    emb = np.array([[0.0], [0.1], [0.25], [10.0], [10.1], [10.3]])
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 0], [1, 0], [1, 1]])
    # k=2 nearest (l2): 0->{1,2} 1->{0,2} 2->{1,0} 3->{4,5} 4->{3,5} 5->{4,3}
    # prefix 1 hits: 0:1/2 1:1/2 2:0/2 3:2/2 4:2/2 5:2/2 -> 8/12
    assert embedding_hit_rate(emb, codes, k=2, prefix_levels=1, metric="l2") == pytest.approx(8 / 12)
    # full SID hits: 0:0 1:0 2:0 3:1/2 4:1/2 5:0 -> 2/12
    assert embedding_hit_rate(emb, codes, k=2, metric="l2") == pytest.approx(2 / 12)
    with pytest.raises(ValueError, match="prefix_levels"):
        embedding_hit_rate(emb, codes, k=2, prefix_levels=3)


def test_random_codes_hit_about_one_in_k_and_clustered_codes_much_more() -> None:
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(8, 16)) * 5
    labels = rng.integers(0, 8, size=2000)
    emb = centres[labels] + rng.normal(size=(2000, 16))
    random_codes = rng.integers(0, 8, size=(2000, 2))
    good = np.stack([labels, rng.integers(0, 8, size=2000)], axis=1)
    assert embedding_hit_rate(emb, random_codes, k=10, prefix_levels=1, num_queries=500) == pytest.approx(1 / 8, abs=0.03)
    assert embedding_hit_rate(emb, good, k=10, prefix_levels=1, num_queries=500) > 0.99


def test_sid_metrics_in_one_call() -> None:
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    out = sid_metrics(CODES, 3, embeddings=emb, k=2)
    assert out["num_unique"] == 3 and out["collision_rate"] == pytest.approx(5 / 6)
    assert out["gini"] == pytest.approx(2 / 9) and out["max_per_sid"] == 3
    assert out["perplexity_l0"] == pytest.approx(2.0) and out["utilization_l0"] == pytest.approx(2 / 3)
    assert {"hit_rate@2_p1", "hit_rate@2_p2"} <= set(out)
    assert all(isinstance(v, float) for v in out.values())
