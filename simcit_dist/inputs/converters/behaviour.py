"""Behaviour views of small public datasets: training split, window co-occurrence pairs, and a CF embedding.

Everything here uses the *training* part of each user's sequence only, so no evaluation item
leaks into the tokenizer's inputs:

- ``leave_last``: each user's last ``holdout_last`` items are held out (the TIGER / LETTER
  leave-one-out protocol: last = test, second to last = validation);
- ``fraction``: each user's first ``train_fraction`` of interactions by time are training
  (the chronological 80/10/10 protocol of the SimCIT POI experiments).

Pairs: items at most ``window`` steps apart in a user's training sequence, unordered
(``item_a < item_b``), aggregated with ``weight`` = number of co-occurrences. An item next to
itself (a repeat) makes no pair; how many were skipped is in the summary notes.

``emb_cf``: the PPMI matrix of those co-occurrence counts, factorised by a seeded randomised
truncated SVD (4 power iterations), ``U * sqrt(S)``. Items without any training co-occurrence get a null
``emb_cf`` (missing modality), not a zero vector. This runs in one process (scipy sparse):
it is meant for the public benchmarks (<= 10^5 items); AL-GR ships its own embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from simcit_dist.data.schemas import INTERACTIONS_SCHEMA, PAIRS_SCHEMA
from simcit_dist.inputs.config import BehaviourConfig


@dataclass
class Interactions:
    """Interactions sorted by (user, time); arrays of equal length."""

    user_id: np.ndarray
    item_id: np.ndarray
    timestamp: np.ndarray

    @classmethod
    def sorted(cls, user_id: np.ndarray, item_id: np.ndarray, timestamp: np.ndarray) -> Interactions:
        order = np.lexsort((np.arange(len(user_id)), timestamp, user_id))  # stable on ties
        return cls(np.asarray(user_id, np.int64)[order], np.asarray(item_id, np.int64)[order],
                   np.asarray(timestamp, np.int64)[order])

    def __len__(self) -> int:
        return len(self.user_id)

    def select(self, mask: np.ndarray) -> Interactions:
        return Interactions(self.user_id[mask], self.item_id[mask], self.timestamp[mask])

    def table(self) -> pa.Table:
        return pa.table({"user_id": self.user_id, "item_id": self.item_id, "timestamp": self.timestamp},
                        schema=INTERACTIONS_SCHEMA)

    def position_in_user(self) -> tuple[np.ndarray, np.ndarray]:
        """(0-based position of each row in its user's sequence, that user's sequence length)."""
        starts = np.flatnonzero(np.r_[True, self.user_id[1:] != self.user_id[:-1]]) if len(self) else np.zeros(0, int)
        lengths = np.diff(np.r_[starts, len(self)])
        first = np.repeat(starts, lengths)
        return np.arange(len(self)) - first, np.repeat(lengths, lengths)


def min_count_filter(inter: Interactions, min_item: int, min_user: int) -> np.ndarray:
    """Rows kept after dropping items with < ``min_item`` interactions, then users with < ``min_user``."""
    keep = np.ones(len(inter), dtype=bool)
    if min_item > 0:
        items, inverse, counts = np.unique(inter.item_id, return_inverse=True, return_counts=True)
        keep &= counts[inverse] >= min_item
    if min_user > 0:
        users, inverse = np.unique(inter.user_id, return_inverse=True)
        counts = np.bincount(inverse, weights=keep, minlength=len(users))
        keep &= counts[inverse] >= min_user
    return keep


def training_mask(inter: Interactions, cfg: BehaviourConfig) -> np.ndarray:
    pos, length = inter.position_in_user()
    if cfg.holdout == "leave_last":
        return pos < length - cfg.holdout_last
    return pos < np.floor(length * cfg.train_fraction)


def window_pairs(inter: Interactions, window: int) -> tuple[pa.Table, int]:
    """(pairs table with weights, number of repeat pairs skipped) over consecutive rows of each user."""
    a_parts, b_parts = [], []
    repeats = 0
    for k in range(1, window + 1):
        same_user = inter.user_id[k:] == inter.user_id[:-k]
        a, b = inter.item_id[:-k][same_user], inter.item_id[k:][same_user]
        repeats += int((a == b).sum())
        a_parts.append(np.minimum(a, b)[a != b])
        b_parts.append(np.maximum(a, b)[a != b])
    a = np.concatenate(a_parts) if a_parts else np.zeros(0, np.int64)
    b = np.concatenate(b_parts) if b_parts else np.zeros(0, np.int64)
    pairs, counts = np.unique(np.stack([a, b], axis=1), axis=0, return_counts=True) if a.size else (
        np.zeros((0, 2), np.int64), np.zeros(0, np.int64))
    table = pa.table({"item_a": pairs[:, 0], "item_b": pairs[:, 1], "weight": counts.astype(np.float32)},
                     schema=PAIRS_SCHEMA)
    return table, repeats


def ppmi_svd(pairs: pa.Table, item_ids: np.ndarray, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (n, dim) float32, has_cooccurrence (n,)) for ``item_ids`` from weighted pairs."""
    n = len(item_ids)
    order = np.argsort(item_ids)
    lookup = item_ids[order]
    a = order[np.searchsorted(lookup, pairs["item_a"].to_numpy())]
    b = order[np.searchsorted(lookup, pairs["item_b"].to_numpy())]
    w = pairs["weight"].to_numpy().astype(np.float64)
    counts = sp.coo_matrix((np.r_[w, w], (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()
    row_sum = np.asarray(counts.sum(axis=1)).ravel()
    has = row_sum > 0
    emb = np.zeros((n, dim), dtype=np.float32)
    if counts.nnz == 0 or dim == 0:
        return emb, has
    coo = counts.tocoo()
    pmi = np.log(coo.data * row_sum.sum() / (row_sum[coo.row] * row_sum[coo.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(n, n))
    k = min(dim, n - 1)
    u, s, _ = randomized_svd(ppmi, n_components=k, n_iter=4, random_state=seed)
    emb[:, :k] = (u * np.sqrt(s)).astype(np.float32)  # columns beyond rank n - 1 stay 0
    # An item whose PPMI row is empty (only "expected" co-occurrences) has no direction either.
    has &= np.abs(emb).max(axis=1) > 0
    return emb, has


def behaviour_views(inter: Interactions, item_ids: np.ndarray, cfg: BehaviourConfig
                    ) -> tuple[pa.Table, np.ndarray | None, np.ndarray, dict[str, int]]:
    """(training pairs, emb_cf or None, has_cf mask, notes) for the catalog's ``item_ids``."""
    train = inter.select(training_mask(inter, cfg))
    pairs, repeats = window_pairs(train, cfg.window)
    notes = {"training_interactions": len(train), "held_out_interactions": len(inter) - len(train),
             "repeat_pairs_skipped": repeats}
    if cfg.cf_dim == 0:
        return pairs, None, np.zeros(len(item_ids), dtype=bool), notes
    known = np.isin(pairs["item_a"].to_numpy(), item_ids) & np.isin(pairs["item_b"].to_numpy(), item_ids)
    emb, has = ppmi_svd(pairs.filter(pa.array(known)), item_ids, cfg.cf_dim, cfg.seed)
    notes["items_without_cf"] = int((~has).sum())
    return pairs, emb, has, notes
