from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from simcit_dist.assign.resolve import (
    KEEP,
    PENDING,
    RETIRED,
    AssignStats,
    SuffixSpaceExhausted,
    assign_partition,
    classify_partition,
)
from simcit_dist.data.exchange import split_by_partition

L = 3


def encoded(ids: np.ndarray, codes: np.ndarray, dist: np.ndarray, emb_hash: np.ndarray | None = None) -> pa.Table:
    cols = {"item_id": pa.array(ids, pa.int64())}
    for i in range(L):
        cols[f"c{i + 1}"] = pa.array(codes[:, i], pa.int32())
    cols["dist"] = pa.array(dist, pa.float32())
    cols["emb_hash"] = pa.array(emb_hash if emb_hash is not None else ids * 7, pa.int64())
    return pa.table(cols)


def reference_suffixes(ids, codes, dist):
    """Plain reference: per code tuple, rank by (dist, item_id)."""
    groups: dict[tuple, list] = {}
    for i, c, d in zip(ids.tolist(), map(tuple, codes.tolist()), np.float32(dist).tolist()):
        groups.setdefault(c, []).append((d, i))
    out = {}
    for members in groups.values():
        for rank, (_, i) in enumerate(sorted(members)):
            out[i] = rank
    return out


def run_full(table: pa.Table, partitions: int, max_suffix: int = 1000):
    rows, _ = classify_partition(table, None, L, same_tokenizer=True, version_seq=1)
    lives, stats = [], AssignStats()
    for _, part in split_by_partition(rows, [f"c{i + 1}" for i in range(L)], partitions):
        live, _, s = assign_partition(part, L, max_suffix)
        lives.append(live)
        stats = stats.merge(s)
    return pa.concat_tables(lives).sort_by("item_id"), stats


def test_full_assignment_matches_reference_and_is_unique() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    ids = rng.permutation(n).astype(np.int64) + 100
    codes = rng.integers(0, 6, size=(n, L))
    dist = rng.random(n).astype(np.float32)
    live, stats = run_full(encoded(ids, codes, dist), partitions=1)
    ref = reference_suffixes(ids, codes, dist)
    got = dict(zip(live.column("item_id").to_pylist(), live.column("suffix").to_pylist()))
    assert got == ref
    sids = live.column("sid").to_pylist()
    assert len(set(sids)) == n
    # 216 code tuples for 5000 items: every tuple is a collision group
    assert stats.groups.num_unique == len({tuple(c) for c in codes.tolist()})
    assert stats.groups.num_items == n and stats.groups.max_per_sid == max(ref.values()) + 1
    assert stats.max_suffix == max(ref.values())


def test_result_does_not_depend_on_partitioning_or_row_order() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    ids = np.arange(n, dtype=np.int64)
    codes = rng.integers(0, 4, size=(n, L))
    dist = rng.random(n).astype(np.float32)
    a, _ = run_full(encoded(ids, codes, dist), partitions=1)
    perm = rng.permutation(n)
    b, _ = run_full(encoded(ids[perm], codes[perm], dist[perm]), partitions=7)
    assert a.equals(b)


def test_suffix_space_exhausted_is_a_clear_error() -> None:
    ids = np.arange(10, dtype=np.int64)
    codes = np.zeros((10, L), dtype=np.int64)
    with pytest.raises(SuffixSpaceExhausted, match=r"10 items share code tuple \(0, 0, 0\) .*0\.\.3"):
        run_full(encoded(ids, codes, np.zeros(10, np.float32)), partitions=1, max_suffix=3)


def test_duplicate_ids_are_reported() -> None:
    ids = np.array([1, 2, 2, 3, 3, 3], dtype=np.int64)
    _, stats = classify_partition(encoded(ids, np.zeros((6, L), np.int64), np.zeros(6)), None, L, True, 1)
    assert stats.duplicates == 3 and stats.duplicate_sample == [2, 3]


def previous_table(live: pa.Table) -> pa.Table:
    return live.select(["item_id", "c1", "c2", "c3", "suffix", "emb_hash"])


def test_nightly_invariants() -> None:
    rng = np.random.default_rng(2)
    n = 4000
    ids = np.arange(n, dtype=np.int64)
    codes = rng.integers(0, 5, size=(n, L))
    dist = rng.random(n).astype(np.float32)
    day1, _ = run_full(encoded(ids, codes, dist), partitions=3)
    prev = previous_table(day1)
    # day 2: drop 300, add 400, change 500 embeddings (200 of them keep their codes)
    removed = rng.choice(n, 300, replace=False)
    keep_mask = np.ones(n, bool)
    keep_mask[removed] = False
    ids2, codes2, dist2 = ids[keep_mask], codes[keep_mask].copy(), dist[keep_mask].copy()
    hash2 = ids2 * 7
    changed = rng.choice(len(ids2), 500, replace=False)
    hash2[changed] += 1
    moved = changed[200:]
    codes2[moved] = (codes2[moved] + 1) % 5
    new_ids = np.arange(n, n + 400, dtype=np.int64)
    ids2 = np.concatenate([ids2, new_ids])
    codes2 = np.concatenate([codes2, rng.integers(0, 5, size=(400, L))])
    dist2 = np.concatenate([dist2, rng.random(400).astype(np.float32)])
    hash2 = np.concatenate([hash2, new_ids * 7])
    rows, stats = classify_partition(encoded(ids2, codes2, dist2, hash2), prev, L, same_tokenizer=True,
                                     version_seq=2)
    assert (stats.added, stats.removed, stats.changed, stats.unchanged, stats.changed_kept_sid) == (
        400, 300, 500, n - 300 - 500, 200)
    status = rows.column("status").to_numpy()
    assert (status == KEEP).sum() == n - 300 - 300 and (status == PENDING).sum() == 300 + 400
    assert (status == RETIRED).sum() == 300 + 300
    lives, retireds = [], []
    for _, part in split_by_partition(rows, ["c1", "c2", "c3"], 4):
        live, ret, _ = assign_partition(part, L, 10_000, retire_versions=3, version_seq=2)
        lives.append(live)
        retireds.append(ret)
    day2 = pa.concat_tables(lives).sort_by("item_id")
    retired = pa.concat_tables(retireds)
    old = dict(zip(day1.column("item_id").to_pylist(), day1.column("sid").to_pylist()))
    new = dict(zip(day2.column("item_id").to_pylist(), day2.column("sid").to_pylist()))
    changed_ids = set(ids[keep_mask][changed].tolist())
    moved_ids = set(ids[keep_mask][moved].tolist())
    for item, sid in new.items():
        if item in old and item not in moved_ids:
            assert sid == old[item], item  # unchanged (and changed-but-same-codes) keep their SID exactly
    assert len(set(new.values())) == len(new)
    fresh = {new[i] for i in new if i not in old or i in moved_ids}
    live_before = {old[i] for i in old if i in new and i not in moved_ids}
    retired_sids = {f"{a}-{b}-{c}/{s}" for a, b, c, s in zip(*(retired.column(x).to_pylist()
                                                                for x in ("c1", "c2", "c3", "suffix")))}
    assert len(retired_sids) == 600
    assert not fresh & live_before and not fresh & retired_sids
    assert changed_ids  # sanity


def test_retired_sids_are_freed_after_the_quarantine() -> None:
    rows = pa.concat_tables([
        classify_partition(encoded(np.array([5]), np.zeros((1, L), np.int64), np.zeros(1)), None, L, True, 9)[0],
    ])
    retired_row = rows.set_column(rows.schema.get_field_index("status"), "status", pa.array([RETIRED], pa.int8()))
    retired_row = retired_row.set_column(retired_row.schema.get_field_index("suffix"), "suffix",
                                         pa.array([0], pa.int32()))
    retired_row = retired_row.set_column(retired_row.schema.get_field_index("retired_at"), "retired_at",
                                         pa.array([7], pa.int32()))
    item = classify_partition(encoded(np.array([6]), np.zeros((1, L), np.int64), np.zeros(1)), None, L, True, 9)[0]
    both = pa.concat_tables([retired_row, item])
    live, ret, _ = assign_partition(both, L, 10, retire_versions=3, version_seq=9)
    assert live.column("suffix").to_pylist() == [1] and ret.num_rows == 1  # 9 - 7 < 3: still reserved
    live, ret, _ = assign_partition(both, L, 10, retire_versions=2, version_seq=9)
    assert live.column("suffix").to_pylist() == [0] and ret.num_rows == 0  # expired: suffix 0 is free again


def test_capacity_reassignment_moves_overflow_to_nearest_free_code() -> None:
    ids = np.arange(4, dtype=np.int64)
    codes = np.array([[0, 0, 1]] * 3 + [[0, 0, 2]])
    dist = np.array([0.1, 0.2, 0.3, 0.1], np.float32)
    table = encoded(ids, codes, dist)
    cand = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3], [2, 1, 3]], np.int32)
    table = table.append_column("cand", pa.FixedSizeListArray.from_arrays(pa.array(cand.reshape(-1)), 3))
    table = table.append_column("cand_dist", pa.FixedSizeListArray.from_arrays(
        pa.array(np.zeros(12, np.float32)), 3))
    rows, _ = classify_partition(table, None, L, True, 1)
    live, _, stats = assign_partition(rows, L, 10, capacity=1)
    got = {i: (c, s) for i, c, s in zip(live.column("item_id").to_pylist(), live.column("c3").to_pylist(),
                                        live.column("suffix").to_pylist())}
    # item 0 keeps code 1; item 3 keeps code 2 (it is first there by order); item 1 -> 3; item 2 has no room
    assert got[0] == (1, 0) and got[3] == (2, 0) and got[1] == (3, 0)
    assert got[2] == (1, 1) and stats.reassigned_by_capacity == 1


def test_algr_tokens_and_vocab() -> None:
    from simcit_dist.assign.export import algr_tokens, vocab

    assert algr_tokens(np.array([[3, 0, 8191], [0, 5, 2]]), 8192) == ["C3C8192C24575", "C0C8197C16386"]
    v = vocab(levels=3, codebook_size=8, max_suffix=2)
    assert v["position_offsets"] == [2, 10, 18, 26] and v["vocab_size"] == 29


def test_letter_index_import_roundtrip(tmp_path) -> None:
    import json

    from simcit_dist.assign.external import export_letter_index, import_letter_index
    from simcit_dist.sids.table import SIDTableError, read_sid_table

    index = {"0": ["<a_1>", "<b_2>", "<c_3>"], "1": ["<a_1>", "<b_2>", "<c_3>"], "7": ["<a_0>", "<b_0>", "<c_9>"]}
    path = tmp_path / "index.json"
    path.write_text(json.dumps(index))
    manifest = import_letter_index(str(path), str(tmp_path / "sids"))
    table, _ = read_sid_table(str(tmp_path / "sids"))
    assert table.column("suffix").to_pylist() == [0, 1, 0] and manifest.metrics["collision_rate"] == 2 / 3
    assert export_letter_index(table, 3) == index
    path.write_text(json.dumps({"0": ["<a_1>", "<c_2>"]}))
    with pytest.raises(SIDTableError, match=r"item 0: token 1 is '<c_2>', expected '<b_N>'"):
        import_letter_index(str(path), str(tmp_path / "other"))
