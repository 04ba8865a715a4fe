"""Per-partition decisions of SID assignment (pure numpy/pyarrow; the job runs them as Ray tasks).

Stage A, partitioned by ``item_id`` (:func:`classify_partition`): finds duplicate ids and, in a
nightly run, compares today's items with the previous version: unchanged items keep their SID
exactly; changed items keep it only if their codes did not move; new and moved items become
*pending*; removed items' SIDs (and moved items' old SIDs) become *retired*.

Stage B, partitioned by the code tuple (:func:`assign_partition`): every pending item gets the
smallest suffixes not taken by a kept or quarantined-retired SID of its code tuple, in a stable
order (distance to the quantised point, then item_id). Optional FORGE-style capacity: items beyond
``capacity`` per full code first move to the nearest last-level code of the same prefix that has
room (candidates come from the encoder), and only then fall back to suffixes. Optional
zero-collision reassignment (:mod:`simcit_dist.assign.reassign`): colliding items move to free
last-level codes of their prefix by a minimum-cost assignment, and only then fall back to suffixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from simcit_dist.assign.reassign import prefix_groups, reassign_prefix
from simcit_dist.sids.metrics import LevelUsage, SIDGroupStats
from simcit_dist.sids.table import code_columns, sid_strings

PENDING, KEEP, RETIRED = 0, 1, 2


class DuplicateItemError(ValueError):
    """The catalog holds the same item_id more than once."""


class SuffixSpaceExhausted(ValueError):
    """More items share one code tuple than there are suffix values."""


@dataclass
class ClassifyStats:
    current: int = 0
    previous: int = 0
    added: int = 0
    removed: int = 0
    changed: int = 0  # embedding changed (whether or not its SID did)
    unchanged: int = 0
    changed_kept_sid: int = 0  # changed embedding, same codes: SID kept
    duplicates: int = 0
    duplicate_sample: list[int] = field(default_factory=list)

    def merge(self, other: ClassifyStats) -> ClassifyStats:
        out = ClassifyStats(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__
                               if k != "duplicate_sample"})
        out.duplicate_sample = (self.duplicate_sample + other.duplicate_sample)[:20]
        return out


def _codes(table: pa.Table, prefix: str, levels: int) -> np.ndarray:
    cols = [f"{prefix}{c}" for c in code_columns(levels)]
    return np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in cols], axis=1).astype(np.int64)


def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _empty_like_ids(n: int, value: int = -1) -> np.ndarray:
    return np.full(n, value, dtype=np.int64)


def classify_partition(current: pa.Table | None, previous: pa.Table | None, levels: int,
                       same_tokenizer: bool, version_seq: int) -> tuple[pa.Table, ClassifyStats]:
    """Stage A. ``current``: item_id, c1..cL, dist, emb_hash (+ cand/cand_dist). ``previous``:
    item_id, c1..cL, suffix, emb_hash of the previous version (None on a first run).
    Returns the rows for stage B (see :func:`stage_b_schema`) and the diff counts."""
    stats = ClassifyStats()
    cur = current if current is not None else None
    if cur is not None:
        cur = cur.sort_by([("item_id", "ascending"), ("emb_hash", "ascending")])
        ids = _col(cur, "item_id")
        dup = np.zeros(len(ids), dtype=bool)
        dup[1:] = ids[1:] == ids[:-1]
        if dup.any():
            stats.duplicates = int(dup.sum())
            stats.duplicate_sample = [int(x) for x in np.unique(ids[dup])[:20]]
            return stage_b_rows({}, 0, levels), stats
        stats.current = len(ids)
    prev = previous.sort_by("item_id") if previous is not None else None
    stats.previous = prev.num_rows if prev is not None else 0
    if prev is None or not same_tokenizer:
        rows = _pending_rows(cur, prev, levels)
        if prev is not None:  # new tokenizer: diff by item presence and content only
            _count_presence(stats, cur, prev)
        else:
            stats.added = stats.current
        return rows, stats
    return _nightly_rows(cur, prev, levels, version_seq, stats), stats


def _count_presence(stats: ClassifyStats, cur: pa.Table | None, prev: pa.Table) -> None:
    cur_ids = _col(cur, "item_id") if cur is not None else np.zeros(0, np.int64)
    prev_ids = _col(prev, "item_id")
    both = np.isin(cur_ids, prev_ids, assume_unique=True)
    stats.added = int((~both).sum())
    stats.removed = int((~np.isin(prev_ids, cur_ids, assume_unique=True)).sum())
    if both.any():
        cur_hash = _col(cur, "emb_hash")[both]  # type: ignore[arg-type]
        idx = np.searchsorted(prev_ids, cur_ids[both])
        same = cur_hash == _col(prev, "emb_hash")[idx]
        stats.unchanged = int(same.sum())
        stats.changed = int((~same).sum())


def _pending_rows(cur: pa.Table | None, prev: pa.Table | None, levels: int) -> pa.Table:
    """Every current item pending; previous SIDs attached (for the mapping report) when present."""
    if cur is None:
        return stage_b_rows({}, 0, levels)
    n = cur.num_rows
    cols = {"item_id": _col(cur, "item_id"), "codes": _codes(cur, "", levels), "dist": _col(cur, "dist"),
            "emb_hash": _col(cur, "emb_hash"), "status": np.full(n, PENDING, np.int8),
            "suffix": _empty_like_ids(n), "retired_at": _empty_like_ids(n)}
    prev_codes = np.full((n, levels), -1, np.int64)
    prev_suffix = _empty_like_ids(n)
    if prev is not None:
        prev_ids = _col(prev, "item_id")
        idx = np.searchsorted(prev_ids, cols["item_id"])
        idx_c = np.minimum(idx, len(prev_ids) - 1)
        found = (idx < len(prev_ids)) & (prev_ids[idx_c] == cols["item_id"]) if len(prev_ids) else np.zeros(n, bool)
        prev_codes[found] = _codes(prev, "", levels)[idx_c[found]]
        prev_suffix[found] = _col(prev, "suffix")[idx_c[found]]
    cols["prev_codes"], cols["prev_suffix"] = prev_codes, prev_suffix
    _attach_candidates(cols, cur, np.arange(n))
    return stage_b_rows(cols, n, levels)


def _attach_candidates(cols: dict[str, np.ndarray], cur: pa.Table, take: np.ndarray) -> None:
    if "cand" in cur.column_names:
        k = cur.schema.field("cand").type.list_size
        cols["cand"] = cur.column("cand").combine_chunks().flatten().to_numpy().reshape(-1, k)[take]
        cols["cand_dist"] = cur.column("cand_dist").combine_chunks().flatten().to_numpy().reshape(-1, k)[take]


def _nightly_rows(cur: pa.Table | None, prev: pa.Table, levels: int, version_seq: int,
                  stats: ClassifyStats) -> pa.Table:
    cur_ids = _col(cur, "item_id") if cur is not None else np.zeros(0, np.int64)
    prev_ids = _col(prev, "item_id")
    prev_codes, prev_suffix, prev_hash = _codes(prev, "", levels), _col(prev, "suffix"), _col(prev, "emb_hash")
    idx = np.searchsorted(prev_ids, cur_ids)
    idx_c = np.minimum(idx, max(len(prev_ids) - 1, 0))
    in_prev = (idx < len(prev_ids)) & (prev_ids[idx_c] == cur_ids) if len(prev_ids) else np.zeros(len(cur_ids), bool)
    cur_codes = _codes(cur, "", levels) if cur is not None else np.zeros((0, levels), np.int64)
    cur_hash = _col(cur, "emb_hash") if cur is not None else np.zeros(0, np.int64)
    unchanged = in_prev & (cur_hash == prev_hash[idx_c])
    changed = in_prev & ~unchanged
    same_codes = changed & (cur_codes == prev_codes[idx_c]).all(axis=1)
    keep = unchanged | same_codes
    moved = changed & ~same_codes
    stats.unchanged, stats.changed = int(unchanged.sum()), int(changed.sum())
    stats.changed_kept_sid, stats.added = int(same_codes.sum()), int((~in_prev).sum())
    removed = ~np.isin(prev_ids, cur_ids, assume_unique=True)
    stats.removed = int(removed.sum())
    n = len(cur_ids)
    codes = np.where(keep[:, None], prev_codes[idx_c], cur_codes) if n else cur_codes
    suffix = np.where(keep, prev_suffix[idx_c], -1) if n else _empty_like_ids(0)
    prev_c = np.where(in_prev[:, None], prev_codes[idx_c], -1) if n else np.zeros((0, levels), np.int64)
    live = {"item_id": cur_ids, "codes": codes, "dist": _col(cur, "dist") if cur is not None else np.zeros(0),
            "emb_hash": cur_hash, "status": np.where(keep, KEEP, PENDING).astype(np.int8),
            "suffix": suffix.astype(np.int64), "retired_at": _empty_like_ids(n), "prev_codes": prev_c,
            "prev_suffix": np.where(in_prev, prev_suffix[idx_c], -1).astype(np.int64)}
    if cur is not None:
        _attach_candidates(live, cur, np.arange(n))
    # retired: removed items' SIDs and the old SIDs of moved items
    gone = np.concatenate([np.flatnonzero(removed), idx_c[moved]])
    m = len(gone)
    retired = {"item_id": prev_ids[gone], "codes": prev_codes[gone], "dist": np.zeros(m),
               "emb_hash": prev_hash[gone], "status": np.full(m, RETIRED, np.int8),
               "suffix": prev_suffix[gone].astype(np.int64), "retired_at": np.full(m, version_seq, np.int64),
               "prev_codes": prev_codes[gone], "prev_suffix": prev_suffix[gone].astype(np.int64)}
    if "cand" in live:
        k = live["cand"].shape[1]
        retired["cand"] = np.full((m, k), -1, live["cand"].dtype)
        retired["cand_dist"] = np.full((m, k), np.inf, live["cand_dist"].dtype)
    return pa.concat_tables([stage_b_rows(live, n, levels), stage_b_rows(retired, m, levels)])


def stage_b_rows(cols: dict[str, np.ndarray], n: int, levels: int) -> pa.Table:
    codes = cols.get("codes", np.zeros((n, levels), np.int64))
    prev_codes = cols.get("prev_codes", np.full((n, levels), -1, np.int64))
    data: dict[str, pa.Array] = {"item_id": pa.array(cols.get("item_id", np.zeros(n, np.int64)), pa.int64())}
    for i, c in enumerate(code_columns(levels)):
        data[c] = pa.array(codes[:, i], pa.int32())
    data["dist"] = pa.array(cols.get("dist", np.zeros(n)), pa.float32())
    data["emb_hash"] = pa.array(cols.get("emb_hash", np.zeros(n, np.int64)), pa.int64())
    data["status"] = pa.array(cols.get("status", np.zeros(n, np.int8)), pa.int8())
    data["suffix"] = pa.array(cols.get("suffix", _empty_like_ids(n)), pa.int32())
    data["retired_at"] = pa.array(cols.get("retired_at", _empty_like_ids(n)), pa.int32())
    for i, c in enumerate(code_columns(levels)):
        data["prev_" + c] = pa.array(prev_codes[:, i], pa.int32())
    data["prev_suffix"] = pa.array(cols.get("prev_suffix", _empty_like_ids(n)), pa.int32())
    if "cand" in cols:
        k = cols["cand"].shape[1]
        data["cand"] = pa.FixedSizeListArray.from_arrays(pa.array(cols["cand"].reshape(-1), pa.int32()), k)
        data["cand_dist"] = pa.FixedSizeListArray.from_arrays(
            pa.array(cols["cand_dist"].reshape(-1), pa.float32()), k)
    return pa.table(data)


# ---------------------------------------------------------------- stage B


@dataclass
class AssignStats:
    """Mergeable per-partition results (partitions hold disjoint code tuples)."""

    live_items: int = 0
    retired_sids: int = 0
    reassigned_by_capacity: int = 0
    sid_changed: int = 0  # items present before whose full SID differs now
    max_suffix: int = -1
    groups: SIDGroupStats = field(default_factory=SIDGroupStats.empty)  # items per code tuple (pre-suffix)
    usage: LevelUsage | None = None  # per-level code counts of live items
    reassigned_to_free_code: int = 0  # collision=reassign: items moved to a free last-level code

    def merge(self, other: AssignStats) -> AssignStats:
        usage = other.usage if self.usage is None else self.usage if other.usage is None else \
            self.usage.merge(other.usage)
        return AssignStats(self.live_items + other.live_items, self.retired_sids + other.retired_sids,
                           self.reassigned_by_capacity + other.reassigned_by_capacity,
                           self.sid_changed + other.sid_changed, max(self.max_suffix, other.max_suffix),
                           self.groups.merge(other.groups), usage,
                           self.reassigned_to_free_code + other.reassigned_to_free_code)


def _group_starts(codes: np.ndarray) -> np.ndarray:
    """Boolean (N,) marking the first row of each run of equal code tuples (rows sorted)."""
    start = np.ones(len(codes), dtype=bool)
    if len(codes) > 1:
        start[1:] = (codes[1:] != codes[:-1]).any(axis=1)
    return start


def assign_partition(rows: pa.Table, levels: int, max_suffix: int, capacity: int = 0,
                     retire_versions: int = 0, version_seq: int = 0, codebook_size: int | None = None,
                     zero_collision: bool = False) -> tuple[pa.Table, pa.Table, AssignStats]:
    """Stage B: (live SID rows sorted by item_id, retired SID rows, stats) for one code partition.

    ``capacity`` > 0 enables the FORGE reassignment, ``zero_collision`` the minimum-cost one to
    free codes (both need ``cand``/``cand_dist`` columns and a partition by code prefix).
    Retired rows older than ``retire_versions`` versions are dropped (their SIDs become free).
    """
    status = _col(rows, "status")
    retired_at = _col(rows, "retired_at").astype(np.int64)
    alive_retired = (status == RETIRED) & (version_seq - retired_at < max(retire_versions, 1))
    live = rows.filter(pa.array(status != RETIRED))
    retired = rows.filter(pa.array(alive_retired))
    codes = _codes(live, "", levels)
    status_l = _col(live, "status")
    suffix = _col(live, "suffix").astype(np.int64).copy()
    stats = AssignStats(live_items=live.num_rows, retired_sids=retired.num_rows)
    if capacity > 0 and "cand" in live.column_names:
        codes, stats.reassigned_by_capacity = _capacity_reassign(live, codes, status_l, retired, levels, capacity)
    elif zero_collision and "cand" in live.column_names:
        codes, stats.reassigned_to_free_code = _zero_collision(live, codes, status_l, retired, levels)
    reserved = _reserved_by_code(codes[status_l == KEEP], suffix[status_l == KEEP], _codes(retired, "", levels),
                                 _col(retired, "suffix").astype(np.int64))
    pending = np.flatnonzero(status_l == PENDING)
    order = pending[np.lexsort((_col(live, "item_id")[pending], _col(live, "dist")[pending],
                                *[codes[pending, i] for i in reversed(range(levels))]))]
    suffix[order] = _pending_suffixes(codes[order], reserved)
    if len(suffix) and suffix.max() > max_suffix:
        bad = int(np.argmax(suffix))
        size = int((codes == codes[bad]).all(axis=1).sum())
        raise SuffixSpaceExhausted(
            f"{size} items share code tuple {tuple(int(x) for x in codes[bad])} and need suffix {int(suffix[bad])}, "
            f"but the suffix space is 0..{max_suffix} (max_suffix): train the tokenizer longer, raise "
            f"max_suffix or use collision=capacity"
        )
    stats.max_suffix = int(suffix.max()) if len(suffix) else -1
    stats.groups = _group_stats(codes)
    if codebook_size is not None:
        stats.usage = LevelUsage.from_codes(codes, codebook_size)
    prev_codes, prev_suffix = _codes(live, "prev_", levels), _col(live, "prev_suffix")
    had = prev_suffix >= 0
    stats.sid_changed = int((had & ((prev_codes != codes).any(axis=1) | (prev_suffix != suffix))).sum())
    return _live_table(live, codes, suffix, levels), _retired_table(retired, levels), stats


def _group_stats(codes: np.ndarray) -> SIDGroupStats:
    if not len(codes):
        return SIDGroupStats.empty()
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return SIDGroupStats.from_group_sizes(counts)


def _reserved_by_code(keep_codes: np.ndarray, keep_suffix: np.ndarray, ret_codes: np.ndarray,
                      ret_suffix: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
    codes = np.concatenate([keep_codes, ret_codes])
    suffix = np.concatenate([keep_suffix, ret_suffix])
    out: dict[tuple[int, ...], list[int]] = {}
    for c, s in zip(map(tuple, codes.tolist()), suffix.tolist()):
        out.setdefault(c, []).append(s)
    return {k: np.unique(np.asarray(v, np.int64)) for k, v in out.items()}


def _pending_suffixes(sorted_codes: np.ndarray, reserved: dict[tuple[int, ...], np.ndarray]) -> np.ndarray:
    """Suffix of each pending row (rows sorted by code tuple, then order key): its rank in the
    group, skipping suffixes reserved for that code tuple."""
    n = len(sorted_codes)
    if n == 0:
        return np.zeros(0, np.int64)
    start = _group_starts(sorted_codes)
    group_id = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    rank = np.arange(n) - first[group_id]
    out = rank.copy()
    if reserved:
        for g, row in enumerate(first):
            taken = reserved.get(tuple(int(x) for x in sorted_codes[row]))
            if taken is None:
                continue
            members = np.flatnonzero(group_id == g)
            out[members] = _ranks_skipping(rank[members], taken)
    return out


def _ranks_skipping(ranks: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """The r-th non-negative integer not in sorted ``taken``, for each r in ``ranks``."""
    free = np.setdiff1d(np.arange(len(ranks) + len(taken)), taken, assume_unique=True)
    return free[ranks]


def _capacity_reassign(live: pa.Table, codes: np.ndarray, status: np.ndarray, retired: pa.Table, levels: int,
                       capacity: int) -> tuple[np.ndarray, int]:
    """Move pending items beyond ``capacity`` per full code to the nearest last-level code of
    the same prefix with room (kept and retired SIDs count as occupied). Deterministic: first
    every code keeps its best ``capacity`` items (by distance, then item_id); then the overflow
    items, in (distance, item_id) order, take their nearest candidate code that has room."""
    codes = codes.copy()
    k = live.schema.field("cand").type.list_size
    cand = live.column("cand").combine_chunks().flatten().to_numpy().reshape(-1, k)
    ids, dist = _col(live, "item_id"), _col(live, "dist")
    load: dict[tuple[int, ...], int] = {}
    for c in map(tuple, np.concatenate([codes[status == KEEP], _codes(retired, "", levels)]).tolist()):
        load[c] = load.get(c, 0) + 1
    pending = np.flatnonzero(status == PENDING)
    order = pending[np.lexsort((ids[pending], dist[pending], *[codes[pending, i] for i in reversed(range(levels))]))]
    overflow = []
    for row in order.tolist():
        key = tuple(int(x) for x in codes[row])
        if load.get(key, 0) < capacity:
            load[key] = load.get(key, 0) + 1
        else:
            overflow.append(row)
    overflow.sort(key=lambda r: (float(dist[r]), int(ids[r])))
    moved = 0
    for row in overflow:
        prefix = tuple(int(x) for x in codes[row, :-1])
        for c in cand[row].tolist():
            alt = (*prefix, int(c))
            if c >= 0 and load.get(alt, 0) < capacity:
                codes[row, -1] = c
                load[alt] = load.get(alt, 0) + 1
                moved += 1
                break
    return codes, moved


def _zero_collision(live: pa.Table, codes: np.ndarray, status: np.ndarray, retired: pa.Table,
                    levels: int) -> tuple[np.ndarray, int]:
    """Run :func:`reassign_prefix` on every prefix that has a conflict (two live items on one full
    code, or a live item on a quarantined retired SID's code); other prefixes are left as they are."""
    k = live.schema.field("cand").type.list_size
    cand = live.column("cand").combine_chunks().flatten().to_numpy().reshape(-1, k).astype(np.int64)
    cand_dist = live.column("cand_dist").combine_chunks().flatten().to_numpy().reshape(-1, k)
    ret_codes = _codes(retired, "", levels)
    both = np.concatenate([codes, ret_codes])
    if not len(codes):
        return codes, 0
    _, inverse, counts = np.unique(both, axis=0, return_inverse=True, return_counts=True)
    conflict = counts[inverse.reshape(-1)][: len(codes)] > 1
    if not conflict.any():
        return codes, 0
    hot = {tuple(p) for p in codes[conflict, :-1].tolist()}
    occupied: dict[tuple[int, ...], list[int]] = {}
    for row in ret_codes.tolist():
        occupied.setdefault(tuple(row[:-1]), []).append(row[-1])
    ids, dist = _col(live, "item_id"), _col(live, "dist")
    out = codes.copy()
    for group in prefix_groups(codes):
        key = tuple(int(x) for x in codes[group[0], :-1])
        if key not in hot:
            continue
        out[group, -1] = reassign_prefix(codes[group, -1], status[group] == PENDING, ids[group], dist[group],
                                         cand[group], cand_dist[group], np.asarray(occupied.get(key, []), np.int64))
    return out, int((out[:, -1] != codes[:, -1]).sum())


def _live_table(live: pa.Table, codes: np.ndarray, suffix: np.ndarray, levels: int) -> pa.Table:
    ids = _col(live, "item_id")
    order = np.argsort(ids, kind="stable")
    data: dict[str, pa.Array] = {"item_id": pa.array(ids[order], pa.int64())}
    for i, c in enumerate(code_columns(levels)):
        data[c] = pa.array(codes[order, i], pa.int32())
    data["suffix"] = pa.array(suffix[order], pa.int32())
    data["sid"] = sid_strings(codes[order], suffix[order])
    data["emb_hash"] = pa.array(_col(live, "emb_hash")[order], pa.int64())
    data["dist"] = pa.array(_col(live, "dist")[order], pa.float32())
    return pa.table(data)


def _retired_table(retired: pa.Table, levels: int) -> pa.Table:
    cols: Sequence[str] = ["item_id", *code_columns(levels), "suffix", "retired_at"]
    return retired.select(cols).sort_by([("item_id", "ascending"), ("retired_at", "ascending")])
