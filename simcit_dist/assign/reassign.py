"""Zero-collision reassignment (``collision: reassign``): colliding items move to free last-level
codes of the same prefix, by a minimum-cost assignment.

Within one prefix (levels 1..L-1), codes held by kept items (nightly: unchanged SIDs) and by
quarantined retired SIDs are occupied and never move. Among the pending items of each full code,
the nearest one (by distance to its quantised point, then item_id) keeps the code if it is free;
every other pending item of that code is a *mover*. Movers are matched to the free last-level
codes of their prefix, each only to one of its ``capacity_candidates`` nearest codewords
(``cand``/``cand_dist`` from the encoder): first as many movers as possible, then the least total
distance (``scipy.optimize.linear_sum_assignment`` on the movers x free-codes cost matrix, with a
cost larger than any sum of real costs for pairs that are not candidates). A mover without a
free candidate keeps its code and gets a suffix, as with ``collision: suffix``.

Everything depends only on the rows of one prefix, sorted by (code, distance, item_id), so the
result is the same for any number of actors or partitions (the exchange partitions by prefix).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

MAX_CELLS = 20_000_000  # cost-matrix entries solved at once (160 MB of float64)


def prefix_groups(codes: np.ndarray) -> list[np.ndarray]:
    """Row indices per distinct prefix (codes[:, :-1]), each in input order, prefixes ascending."""
    if not len(codes):
        return []
    prefix = codes[:, :-1]
    order = np.lexsort([prefix[:, i] for i in reversed(range(prefix.shape[1]))]) if prefix.shape[1] else \
        np.arange(len(codes))
    starts = np.ones(len(order), bool)
    if prefix.shape[1]:
        starts[1:] = (prefix[order][1:] != prefix[order][:-1]).any(axis=1)
    else:
        starts[1:] = False
    return [np.sort(g) for g in np.split(order, np.flatnonzero(starts)[1:])]


def reassign_prefix(last: np.ndarray, pending: np.ndarray, ids: np.ndarray, dist: np.ndarray, cand: np.ndarray,
                    cand_dist: np.ndarray, occupied: np.ndarray) -> np.ndarray:
    """New last-level codes of the rows of one prefix.

    ``last`` (N,) current last-level codes; ``pending`` (N,) bool, the rows that may move;
    ``cand``/``cand_dist`` (N, k) nearest last-level codes of each row (-1 = none); ``occupied``
    last-level codes held by rows that cannot move here (retired SIDs in quarantine)."""
    out = last.copy()
    taken = set(occupied.tolist()) | set(last[~pending].tolist())
    rows = np.flatnonzero(pending)
    rows = rows[np.lexsort((ids[rows], dist[rows], last[rows]))]
    movers: list[int] = []
    for r in rows.tolist():  # the nearest pending row of a free code keeps it
        if int(last[r]) in taken:
            movers.append(r)
        else:
            taken.add(int(last[r]))
    if not movers:
        return out
    movers.sort(key=lambda r: (float(dist[r]), int(ids[r])))
    order = np.asarray(movers)
    # One solve, unless a pathological prefix would need a huge matrix: then blocks of movers in
    # (distance, item_id) order, each optimal given the codes the blocks before it took.
    chunk = max(1, MAX_CELLS // max(1, len(_free_candidates(cand[order], taken))))
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        codes = _free_candidates(cand[part], taken)
        if not len(codes):
            continue
        for r, code in zip(part.tolist(), _solve(cand[part], cand_dist[part], codes).tolist()):
            if code >= 0:
                out[r] = code
                taken.add(int(code))
    return out


def _free_candidates(cand: np.ndarray, taken: set[int]) -> np.ndarray:
    codes = np.unique(cand[cand >= 0])
    return codes[~np.isin(codes, np.fromiter(taken, np.int64, len(taken)))] if taken else codes


def _solve(cand: np.ndarray, cand_dist: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per row, the code it gets (-1: none): most rows placed, then least total distance."""
    m = len(cand)
    real = np.full((m, len(codes)), np.nan)
    col = np.searchsorted(codes, cand)
    ok = (cand >= 0) & (col < len(codes)) & (codes[np.minimum(col, len(codes) - 1)] == cand)
    r, c = np.nonzero(ok)
    real[r, col[r, c]] = cand_dist[r, c].astype(np.float64)
    big = 2.0 * (np.nansum(np.abs(real)) + 1.0)  # one more placed row always beats any distance gain
    cost = np.where(np.isnan(real), big, real)
    rows, cols = linear_sum_assignment(cost)
    out = np.full(m, -1, np.int64)
    placed = ~np.isnan(real[rows, cols])
    out[rows[placed]] = codes[cols[placed]]
    return out
