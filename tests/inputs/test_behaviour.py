from __future__ import annotations

import numpy as np

from simcit_dist.inputs.config import BehaviourConfig
from simcit_dist.inputs.converters.behaviour import (
    Interactions,
    behaviour_views,
    min_count_filter,
    ppmi_svd,
    training_mask,
    window_pairs,
)
from simcit_dist.inputs.converters.foursquare import geo_embedding


def _inter(seqs: dict[int, list[int]]) -> Interactions:
    users = [u for u, s in seqs.items() for _ in s]
    items = [i for s in seqs.values() for i in s]
    times = [t for s in seqs.values() for t in range(len(s))]
    return Interactions.sorted(np.array(users), np.array(items), np.array(times))


def test_sorting_is_by_user_then_time_and_stable() -> None:
    inter = Interactions.sorted(np.array([2, 1, 2, 1]), np.array([10, 11, 12, 13]), np.array([5, 3, 5, 1]))
    assert inter.user_id.tolist() == [1, 1, 2, 2] and inter.item_id.tolist() == [13, 11, 10, 12]


def test_training_split_and_window_pairs() -> None:
    inter = _inter({0: [1, 2, 3, 4, 5], 1: [3, 3, 2, 7], 2: [9]})
    train = inter.select(training_mask(inter, BehaviourConfig(holdout="leave_last", holdout_last=2)))
    assert train.item_id.tolist() == [1, 2, 3, 3, 3]
    pairs, repeats = window_pairs(train, window=2)
    got = {(a, b): w for a, b, w in zip(*(pairs[c].to_pylist() for c in ("item_a", "item_b", "weight")))}
    assert got == {(1, 2): 1.0, (1, 3): 1.0, (2, 3): 1.0} and repeats == 1  # user 1: "3 3" is a repeat
    frac = inter.select(training_mask(inter, BehaviourConfig(holdout="fraction", train_fraction=0.8)))
    assert frac.item_id.tolist() == [1, 2, 3, 4, 3, 3, 2]  # floor(5 * .8) = 4, floor(4 * .8) = 3, floor(.8) = 0
    pairs, _ = window_pairs(inter, window=1)
    assert pairs["weight"].to_pylist()[pairs["item_a"].to_pylist().index(2)] == 2.0  # (2, 3) twice


def test_min_count_filter_items_then_users() -> None:
    inter = _inter({0: [1, 1, 2], 1: [1, 3], 2: [2, 2]})
    keep = min_count_filter(inter, min_item=2, min_user=2)
    assert inter.select(keep).item_id.tolist() == [1, 1, 2, 2, 2]  # item 3 (once) goes, then user 1 has 1 left


def test_ppmi_svd_gives_null_for_items_without_cooccurrence() -> None:
    inter = _inter({0: [1, 2, 3, 1, 2, 3], 1: [4, 5, 4, 5, 6, 6], 2: [7]})
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    pairs, emb, has, notes = behaviour_views(inter, items, BehaviourConfig(window=2, holdout_last=0, cf_dim=4))
    assert emb is not None and emb.shape == (8, 4) and emb.dtype == np.float32
    assert has.tolist() == [True] * 6 + [False, False] and notes["items_without_cf"] == 2
    again, _ = ppmi_svd(pairs, items, 4, seed=0)
    np.testing.assert_array_equal(again, emb)  # seeded: deterministic
    # Items of the two disjoint groups {1,2,3} and {4,5,6} are closer within than across groups.
    unit = emb[:6] / np.linalg.norm(emb[:6], axis=1, keepdims=True)
    sim = unit @ unit.T
    assert sim[0, 1] > sim[0, 4] and sim[3, 4] > sim[3, 0]


def test_geo_embedding_is_standardised_coordinates_plus_fourier_features() -> None:
    coords = np.random.default_rng(0).normal([40.7, -74.0], [0.1, 0.1], size=(500, 2))
    emb = geo_embedding(coords, features=4, scale=1.0, seed=0)
    assert emb.shape == (500, 10) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[:, :2].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(emb[:, :2].std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose((emb[:, 2:] ** 2).sum(axis=1), 1.0, atol=1e-5)  # cos^2 + sin^2 over 4 features / 4
    np.testing.assert_array_equal(emb, geo_embedding(coords, 4, 1.0, 0))
