"""SID proxies against values worked out by hand on a 5-item, 2-level table, and the score job.

Table (item: c1 c2 / suffix)  10: 0 0/0   11: 0 1/0   12: 1 0/0   13: 1 0/1   14: 2 1/0
Users (oldest first; the last item is the test target and is never read):
  u1: 10 11 12 13 [14]   valid 12->13, train 10->11, 11->12
  u2: 12 13 10 [11]      valid 13->10, train 12->13 (12 and 13 share a timestamp: item order)
  u3: 10 14 10 [11]      valid 14->10, train 10->14
  u4: 11 99 12           item 99 has no SID -> 2 items left -> user dropped
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from simcit_dist.data.parquet_io import write_table
from simcit_dist.sids import proxies as px
from simcit_dist.storage import resolve
from simcit_dist.workflows.score_sids import ScoreSidsConfig, score_sids, spearman

ITEMS = np.array([10, 11, 12, 13, 14])
CODES = np.array([[0, 0], [0, 1], [1, 0], [1, 0], [2, 1]])
SUFFIX = np.array([0, 0, 0, 1, 0])
SEQS = {1: [10, 11, 12, 13, 14], 2: [12, 13, 10, 11], 3: [10, 14, 10, 11], 4: [11, 99, 12]}
LN2, LN3 = math.log(2), math.log(3)


def interactions() -> dict[str, np.ndarray]:
    users, items, times = [], [], []
    for user, seq in SEQS.items():
        for pos, item in enumerate(seq):
            users.append(user)
            items.append(item)
            times.append(0 if (user == 2 and pos < 2) else pos)  # u2: 12, 13 tie on time
    order = np.random.default_rng(0).permutation(len(users))  # file order must not matter
    return {"user_id": np.array(users)[order], "item_id": np.array(items)[order], "timestamp": np.array(times)[order]}


@pytest.fixture
def seq() -> px.Sequences:
    inter = interactions()
    rows = px.catalog_rows(ITEMS, inter["item_id"])
    return px.build_sequences(inter["user_id"], rows, inter["timestamp"])


@pytest.fixture
def pids() -> np.ndarray:
    return px.prefix_ids(np.column_stack([CODES, SUFFIX]))


def test_sequences_follow_the_recommender(seq: px.Sequences) -> None:
    assert px.catalog_rows(ITEMS, np.array([12, 99, 10])).tolist() == [2, -1, 0]
    assert seq.lengths.tolist() == [5, 4, 4] and seq.starts.tolist() == [0, 5, 9]
    assert ITEMS[seq.items].tolist() == [10, 11, 12, 13, 14, 12, 13, 10, 11, 10, 14, 10, 11]
    held = px.drop_test_items(seq)
    assert ITEMS[held.items].tolist() == [10, 11, 12, 13, 12, 13, 10, 10, 14, 10]
    valid, train = px.split_transitions(held, "valid"), px.split_transitions(held, "train")
    assert list(zip(ITEMS[valid.prev], ITEMS[valid.next])) == [(12, 13), (13, 10), (14, 10)]
    assert list(zip(ITEMS[train.prev], ITEMS[train.next])) == [(10, 11), (11, 12), (12, 13), (10, 14)]
    assert valid.first.tolist() == [0, 4, 7]


def test_prefix_ids(pids: np.ndarray) -> None:
    assert pids[:, 0].tolist() == [0, 0, 1, 1, 2]
    assert len(set(pids[:, 1].tolist())) == 4 and pids[2, 1] == pids[3, 1]
    assert len(set(pids[:, 2].tolist())) == 5  # the suffix makes every item distinct
    with pytest.raises(ValueError, match="non-negative"):
        px.prefix_ids(np.array([[0, -1]]))


def test_static_proxies(pids: np.ndarray) -> None:
    s = px.static_proxies(CODES, pids)
    assert s["collision_rate"] == pytest.approx(0.4)  # 12 and 13 share (1, 0)
    assert s["distinct_fraction"] == pytest.approx(0.8)
    h1 = -2 * 0.4 * math.log(0.4) - 0.2 * math.log(0.2)
    assert s["perplexity_l1"] == pytest.approx(math.exp(h1))
    assert s["perplexity_l2"] == pytest.approx(math.exp(-0.6 * math.log(0.6) - 0.4 * math.log(0.4)))
    assert s["cond_perplexity_l1"] == pytest.approx(math.exp(h1))
    assert s["cond_perplexity_l2"] == pytest.approx(2 ** 0.4)  # only c1=0 (40% of items) branches, in two


def test_transition_proxies(seq: px.Sequences, pids: np.ndarray) -> None:
    held = px.drop_test_items(seq)
    s = px.transition_proxies(CODES, SUFFIX, pids, held, window=10)
    assert s["valid_targets"] == 3 and s["train_transitions"] == 4
    assert s["next_match_l1"] == pytest.approx(1 / 3) and s["next_match_l2"] == pytest.approx(1 / 3)
    assert s["next_match_lift_l1"] == pytest.approx(1.5)  # chance: P(prev c1=1) P(next c1=1) = 2/3 * 1/3
    assert s["history_match_l1"] == pytest.approx(2 / 3)  # u3's target 10 is also in its history
    assert s["history_match_l2"] == pytest.approx(2 / 3)
    assert s["purity_l1"] == pytest.approx(2 / 3)  # c1=0: 1/3 stay, c1=1: 1/1, weights 2:2
    assert s["purity_l2"] == pytest.approx(0.5)  # (0+0+2*1)/4
    assert s["xent_l1"] == pytest.approx((3 * LN2 + LN3) / 3)  # P = 2/4, 1/4, unseen 1/3
    assert s["xent_l2"] == pytest.approx((2 * math.log(1.5) + LN2) / 3)  # P = 2/3, 2/3, unseen 1/2
    assert s["item_xent_l1"] == pytest.approx(s["xent_l1"])
    assert s["item_xent_l2"] == pytest.approx(2 * LN2 / 3)  # P = 1 (one child), 1/2, 1/2
    assert s["item_xent_suffix"] == pytest.approx(math.log(1.5) / 3)  # P = 2/3, 1, 1
    assert s["item_xent"] == pytest.approx((4 * LN2 + 2 * LN3) / 3)
    one = px.transition_proxies(CODES, SUFFIX, pids, held, window=1)
    assert one["history_match_l1"] == pytest.approx(one["next_match_l1"])


def test_test_items_are_never_read(seq: px.Sequences) -> None:
    """Changing every user's last item changes no proxy."""
    items = seq.items.copy()
    items[seq.starts + seq.lengths - 1] = 4
    other = px.Sequences(items, seq.starts, seq.lengths)
    assert px.sid_proxies(CODES, SUFFIX, other, 10) == px.sid_proxies(CODES, SUFFIX, seq, 10)


def test_smoothed_cross_entropy_and_spearman() -> None:
    got = px.smoothed_cross_entropy(np.array([0, 0, 1]), np.array([2, 2, 0]), np.array([0, 0, 5]),
                                    np.array([2, 1, 0]), np.array([3, 3, 4]))
    assert got == pytest.approx([-math.log(3 / 5), -math.log(1 / 5), math.log(4)])
    assert spearman(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4])) == pytest.approx(0.8)
    assert spearman(np.array([1, 1, 2]), np.array([1, 2, 3])) == pytest.approx(math.sqrt(3) / 2)


def test_score_job(tmp_path: Path) -> None:
    index = {str(i): [f"<a_{c[0]}>", f"<b_{c[1]}>"] for i, c in zip(ITEMS.tolist(), CODES.tolist())}
    flat = {str(i): [f"<a_{k}>", "<b_0>"] for k, i in enumerate(ITEMS.tolist())}  # no shared prefixes
    (tmp_path / "tiny.index.json").write_text(json.dumps(index))
    (tmp_path / "flat.index.json").write_text(json.dumps(flat))
    inter = interactions()
    write_table(pa.table({k: pa.array(v, pa.int64()) for k, v in inter.items()}),
                resolve(str(tmp_path / "inter" / "part-0.parquet")))
    out = tmp_path / "out"
    cfg = ScoreSidsConfig(tables={"tiny": str(tmp_path / "tiny.index.json"), "flat": str(tmp_path / "flat.index.json"),
                                  "published": str(out / "sids" / "tiny")},  # the first import, read as a SID root
                          interactions=str(tmp_path / "inter"), output=str(out),
                          reference={"tiny": 0.2, "flat": 0.1, "published": 0.3})
    result = score_sids(cfg)
    tiny = result["tables"]["tiny"]
    assert tiny["interactions_without_sid"] == 1 and tiny["users"] == 3
    assert tiny["item_xent"] == pytest.approx((4 * LN2 + 2 * LN3) / 3)  # the importer's suffixes match ours
    assert result["tables"]["published"]["item_xent"] == pytest.approx(tiny["item_xent"])
    assert result["tables"]["flat"]["collision_rate"] == 0.0
    assert json.loads((out / "metrics.json").read_text())["spearman"][0]["n"] == 3
    assert "| tiny | 0.2 |" in (out / "report.md").read_text()
    with pytest.raises(ValueError, match="not tables"):
        ScoreSidsConfig(tables={"a": "x"}, interactions="i", output="o", reference={"b": 0.1})
