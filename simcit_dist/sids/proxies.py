"""A one-minute SID score: proxies of a SID table's quality that need no recommender training.

A generative recommender decodes the next item's SID level by level from the history. A table
helps it when the next item's codes are predictable from the previous items' codes, and hurts
it when items the recommender must tell apart share codes. The proxies below measure both on
the interactions alone:

- static (catalog only): collision rate, distinct-tuple fraction, per-level perplexity of code
  usage and conditional perplexity given the prefix;
- transitions (previous item -> next item): how often the next item shares its level-l prefix
  with the previous one (and with any of the last N), that rate over chance (lift), co-occurrence
  purity of each prefix, and cross-entropies of the next item's codes given the previous item's
  codes, counted on training transitions and measured on held-out ones (add-one smoothing).

Splits follow the recommender's leave-one-out protocol: per user (oldest first) the last item is
the test target, the one before it the validation target, the rest training. Held-out scores use
the validation targets; the test items are dropped before anything is computed.

Everything is vectorised over numpy columns (sorting, ``np.unique``, ``bincount``): no Python loop
runs per user or per item, only per level or per history offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

MIN_INTERACTIONS = 3  # leave-one-out needs a training, a validation and a test item


@dataclass(frozen=True)
class Sequences:
    """Per-user item sequences, users contiguous and each oldest first (CSR layout)."""

    items: np.ndarray  # (M,) int64 catalog row of each interaction
    starts: np.ndarray  # (U,) int64 offset of each user's first interaction in ``items``
    lengths: np.ndarray  # (U,) int64

    @property
    def num_users(self) -> int:
        return len(self.lengths)


@dataclass(frozen=True)
class Transitions:
    """(previous item, next item) pairs as catalog rows; ``first`` is the user's first offset."""

    prev: np.ndarray  # (T,) int64
    next: np.ndarray  # (T,) int64
    target: np.ndarray  # (T,) int64 offset of the next item in ``Sequences.items``
    first: np.ndarray  # (T,) int64 offset of that user's oldest item


def catalog_rows(catalog_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """Row of each of ``item_ids`` in the sorted ``catalog_ids``; -1 where the item has no SID."""
    catalog_ids = np.asarray(catalog_ids, dtype=np.int64)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if len(catalog_ids) == 0:
        return np.full(len(item_ids), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(catalog_ids, item_ids), len(catalog_ids) - 1)
    return np.where(catalog_ids[pos] == item_ids, pos, -1).astype(np.int64)


def build_sequences(user_id: np.ndarray, item_row: np.ndarray, timestamp: np.ndarray,
                    min_interactions: int = MIN_INTERACTIONS) -> Sequences:
    """Group interactions into per-user sequences as the recommender does.

    Interactions of items without a SID (``item_row`` -1) are dropped first, then users with
    fewer than ``min_interactions`` items. Ties in time are broken by item (rows are in item-id
    order), so the order matches the recommender's sequence builder.
    """
    if min_interactions < MIN_INTERACTIONS:
        raise ValueError(f"min_interactions must be >= {MIN_INTERACTIONS} (leave-one-out), got {min_interactions}")
    keep = np.asarray(item_row) >= 0
    users = np.asarray(user_id, dtype=np.int64)[keep]
    items = np.asarray(item_row, dtype=np.int64)[keep]
    order = np.lexsort((items, np.asarray(timestamp, dtype=np.int64)[keep], users))
    users, items = users[order], items[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[starts, len(users)])
    long_enough = lengths >= min_interactions
    items = items[np.repeat(long_enough, lengths)]
    lengths = lengths[long_enough].astype(np.int64)
    return Sequences(items, np.cumsum(lengths) - lengths, lengths)


def drop_test_items(seq: Sequences) -> Sequences:
    """The same sequences without each user's last (test) item, so no proxy can read the test split."""
    lengths = seq.lengths - 1
    last = seq.starts + seq.lengths - 1
    keep = np.ones(len(seq.items), dtype=bool)
    keep[last] = False
    return Sequences(seq.items[keep], np.cumsum(lengths) - lengths, lengths)


def split_transitions(seq: Sequences, split: Literal["train", "valid"]) -> Transitions:
    """Transitions into the targets of ``split`` of sequences that no longer hold the test item.

    After :func:`drop_test_items` the validation target is each user's last item and the training
    targets are positions 1 .. n-2 (the first item is never a target: it has no history).
    """
    if split == "valid":
        counts = (seq.lengths >= 2).astype(np.int64)  # a one-item user has no history for its target
        first_target = seq.starts + seq.lengths - 1
    elif split == "train":
        counts = np.maximum(seq.lengths - 2, 0)
        first_target = seq.starts + 1
    else:
        raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
    before = np.repeat(np.cumsum(counts) - counts, counts)
    target = np.repeat(first_target, counts) + (np.arange(int(counts.sum())) - before)
    return Transitions(seq.items[target - 1], seq.items[target], target, np.repeat(seq.starts, counts))


def prefix_ids(codes: np.ndarray) -> np.ndarray:
    """(N, D) dense id of every item's prefix of length 1..D: equal ids <=> equal prefixes.

    Densified level by level, so any code range works without an overflowing mixed-radix key.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer) or (codes.size and codes.min() < 0):
        raise ValueError(f"codes must be non-negative integers of shape (N, D), got {codes.dtype} {codes.shape}")
    n, depth = codes.shape
    out = np.empty((n, depth), dtype=np.int64)
    parent = np.zeros(n, dtype=np.int64)
    for level in range(depth):
        column = codes[:, level].astype(np.int64)
        key = parent * (int(column.max(initial=0)) + 1) + column
        parent = np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64)
        out[:, level] = parent
    return out


def collision_rate(full_ids: np.ndarray) -> float:
    """Fraction of items sharing their full code tuple (before any suffix) with another item."""
    sizes = np.bincount(full_ids)
    return float((sizes[full_ids] >= 2).mean()) if len(full_ids) else float("nan")


def distinct_fraction(full_ids: np.ndarray) -> float:
    """Distinct code tuples per item: 1 for a collision-free table."""
    return float(len(np.unique(full_ids)) / len(full_ids)) if len(full_ids) else float("nan")


def _entropy(ids: np.ndarray) -> float:
    """Entropy (nats) of the empirical distribution of ``ids`` (non-negative ints)."""
    counts = np.bincount(ids)
    p = counts[counts > 0] / len(ids)
    return float(-(p * np.log(p)).sum())


def code_perplexity(codes: np.ndarray) -> np.ndarray:
    """(L,) exp(H(c_l)) over items: the effective number of codes used at each level."""
    return np.exp([_entropy(codes[:, level].astype(np.int64)) for level in range(codes.shape[1])])


def conditional_perplexity(pids: np.ndarray) -> np.ndarray:
    """(D,) exp(H(c_l | c_<l)) over items: the effective branching factor below each prefix.

    A prefix of length l determines (prefix l-1, c_l) and back, so H(c_l | c_<l) is the entropy
    of the length-l prefixes minus that of the length-(l-1) prefixes.
    """
    entropies = np.array([_entropy(pids[:, level]) for level in range(pids.shape[1])])
    return np.exp(np.diff(np.r_[0.0, entropies]))


def prefix_match_rate(pids: np.ndarray, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """(D,) fraction of transitions whose next item shares its length-l prefix with the previous one."""
    if len(prev) == 0:
        return np.full(pids.shape[1], np.nan)
    return (pids[prev] == pids[nxt]).mean(axis=0)


def match_lift(pids: np.ndarray, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """(D,) :func:`prefix_match_rate` over its value if next items were drawn independently of the
    previous ones (same marginals): a table with a few huge prefixes matches often by chance."""
    observed = prefix_match_rate(pids, prev, nxt)
    chance = np.empty(pids.shape[1])
    for level in range(pids.shape[1]):
        size = int(pids[:, level].max(initial=0)) + 1
        p_prev = np.bincount(pids[prev, level], minlength=size) / max(len(prev), 1)
        p_next = np.bincount(pids[nxt, level], minlength=size) / max(len(nxt), 1)
        chance[level] = float(p_prev @ p_next)
    return np.divide(observed, chance, out=np.full_like(observed, np.nan), where=chance > 0)


def history_match_rate(pids: np.ndarray, seq_items: np.ndarray, trans: Transitions, window: int) -> np.ndarray:
    """(D,) fraction of targets whose length-l prefix equals that of any of the last ``window`` items."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if len(trans.target) == 0:
        return np.full(pids.shape[1], np.nan)
    target_ids = pids[trans.next]  # (T, D)
    hit = np.zeros(target_ids.shape, dtype=bool)
    for back in range(1, window + 1):
        pos = trans.target - back
        has = pos >= trans.first  # users with a shorter history have nothing this far back
        hit[has] |= pids[seq_items[pos[has]]] == target_ids[has]
    return hit.mean(axis=0)


def prefix_purity(pids: np.ndarray, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """(D,) co-occurrence purity: per length-l prefix, the fraction of transitions leaving one of
    its items that land on an item of the same prefix, averaged over prefixes weighted by their
    item count (prefixes without an outgoing transition are left out).

    Weighting by transitions instead would give back :func:`prefix_match_rate`; weighting by
    items asks whether the catalog's groups are behaviourally coherent, popular or not.
    """
    out = np.full(pids.shape[1], np.nan)
    for level in range(pids.shape[1]):
        size = int(pids[:, level].max(initial=0)) + 1
        src = pids[prev, level]
        leaving = np.bincount(src, minlength=size)
        staying = np.bincount(src, weights=(pids[nxt, level] == src), minlength=size)
        weight = np.where(leaving > 0, np.bincount(pids[:, level], minlength=size), 0).astype(np.float64)
        if weight.sum() > 0:
            purity = np.divide(staying, leaving, out=np.zeros(size), where=leaving > 0)
            out[level] = float((weight * purity).sum() / weight.sum())
    return out


def smoothed_cross_entropy(train_ctx: np.ndarray, train_y: np.ndarray, eval_ctx: np.ndarray, eval_y: np.ndarray,
                           num_values: np.ndarray | int) -> np.ndarray:
    """(E,) -ln P(y | ctx) of each held-out pair, P counted on the training pairs with add-one
    smoothing over ``num_values`` possible values (a scalar, or one per held-out pair):
    P = (n(ctx, y) + 1) / (n(ctx) + V). An unseen context gets the uniform 1/V."""
    width = int(max(train_y.max(initial=0), eval_y.max(initial=0))) + 1
    pair_keys, pair_counts = np.unique(train_ctx * width + train_y, return_counts=True)
    ctx_keys, ctx_counts = np.unique(train_ctx, return_counts=True)
    n_pair = _lookup(pair_keys, pair_counts, eval_ctx * width + eval_y)
    n_ctx = _lookup(ctx_keys, ctx_counts, eval_ctx)
    return -np.log((n_pair + 1.0) / (n_ctx + np.asarray(num_values, dtype=np.float64)))


def _lookup(keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Count of each query key in (sorted ``keys``, ``counts``), 0 where absent."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[pos] == query, counts[pos], 0)


def next_code_cross_entropy(codes: np.ndarray, pids: np.ndarray, train: Transitions,
                            held_out: Transitions) -> np.ndarray:
    """(L,) mean held-out H(next c_l | previous item's prefix of length l), in nats.

    Add-one smoothing over the codes used at level l. Lower is better, but only alongside the
    perplexities: a level that uses few codes is cheap to predict and tells items apart poorly.
    """
    out = np.full(codes.shape[1], np.nan)
    if len(held_out.prev) == 0:
        return out
    for level in range(codes.shape[1]):
        used = len(np.unique(codes[:, level]))
        out[level] = smoothed_cross_entropy(pids[train.prev, level], codes[train.next, level].astype(np.int64),
                                            pids[held_out.prev, level], codes[held_out.next, level].astype(np.int64),
                                            used).mean()
    return out


def item_cross_entropy(sid: np.ndarray, pids: np.ndarray, train: Transitions, held_out: Transitions) -> np.ndarray:
    """(D,) per-level terms of the held-out -ln P(next item | previous item) of a decoder that
    walks the SID tree: level l predicts the next c_l from (previous item's length-l prefix, next
    item's own prefix c_<l), add-one smoothed over the children that prefix has in the table.

    ``sid`` holds the codes and, as its last column, the suffix, so the path identifies the item
    and the sum over levels is a cross-entropy over items, comparable between tables of any depth
    or collision rate (a table that lumps items together pays at the suffix level).
    """
    n, depth = sid.shape
    out = np.full(depth, np.nan)
    if len(held_out.prev) == 0:
        return out
    for level in range(depth):
        parent = pids[:, level - 1] if level else np.zeros(n, dtype=np.int64)
        child_parent = np.zeros(int(pids[:, level].max()) + 1, dtype=np.int64)
        child_parent[pids[:, level]] = parent  # each prefix has exactly one parent prefix
        children = np.bincount(child_parent)  # (parents,) distinct children of each parent prefix
        # Context key (previous item's length-l prefix, next item's parent prefix); both < n.
        train_ctx = pids[train.prev, level] * n + parent[train.next]
        eval_ctx = pids[held_out.prev, level] * n + parent[held_out.next]
        out[level] = smoothed_cross_entropy(train_ctx, sid[train.next, level].astype(np.int64), eval_ctx,
                                            sid[held_out.next, level].astype(np.int64),
                                            children[parent[held_out.next]]).mean()
    return out


def static_proxies(codes: np.ndarray, pids: np.ndarray) -> dict[str, float]:
    """Catalog-only scores of codes (N, L) with their prefix ids (N, >= L)."""
    levels = codes.shape[1]
    out = {"collision_rate": collision_rate(pids[:, levels - 1]),
           "distinct_fraction": distinct_fraction(pids[:, levels - 1])}
    out.update(_per_level("perplexity", code_perplexity(codes)))
    out.update(_per_level("cond_perplexity", conditional_perplexity(pids[:, :levels])))
    return out


def transition_proxies(codes: np.ndarray, suffix: np.ndarray, pids: np.ndarray, seq: Sequences,
                       window: int) -> dict[str, float]:
    """Scores from behaviour: held-out ones on the validation targets, purity and the counts of the
    cross-entropies on training transitions. ``seq`` must not hold the test items any more."""
    levels = codes.shape[1]
    code_ids = pids[:, :levels]
    train, valid = split_transitions(seq, "train"), split_transitions(seq, "valid")
    out: dict[str, float] = {"train_transitions": len(train.prev), "valid_targets": len(valid.prev)}  # counts: ints
    out.update(_per_level("next_match", prefix_match_rate(code_ids, valid.prev, valid.next)))
    out.update(_per_level("next_match_lift", match_lift(code_ids, valid.prev, valid.next)))
    out.update(_per_level("history_match", history_match_rate(code_ids, seq.items, valid, window)))
    out.update(_per_level("purity", prefix_purity(code_ids, train.prev, train.next)))
    xent = next_code_cross_entropy(codes, code_ids, train, valid)
    out.update(_per_level("xent", xent))
    out["xent_mean"] = float(np.mean(xent))
    item = item_cross_entropy(np.column_stack([codes, suffix]), pids, train, valid)
    out.update(_per_level("item_xent", item[:levels]))
    out["item_xent_suffix"] = float(item[levels])
    out["item_xent"] = float(item.sum())
    return out


def sid_proxies(codes: np.ndarray, suffix: np.ndarray, seq: Sequences, window: int) -> dict[str, float]:
    """Every proxy of one table: codes (N, L) and suffix (N,) by catalog row, sequences of those rows
    (with the test items still in: they are dropped here, before anything reads them)."""
    pids = prefix_ids(np.column_stack([codes, suffix]))  # (N, L + 1)
    return {**static_proxies(codes, pids), **transition_proxies(codes, suffix, pids, drop_test_items(seq), window)}


def _per_level(name: str, values: np.ndarray) -> dict[str, float]:
    return {f"{name}_l{level + 1}": float(v) for level, v in enumerate(values)}
