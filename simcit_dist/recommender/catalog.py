"""The recommender's view of a published SID table: token vocabulary and item <-> SID lookups.

An item's full SID is ``(c1, ..., cL, suffix)``: ``D = L + 1`` *positions*, position ``d`` has
``level_sizes[d]`` local codes (``K`` for the code levels, ``max_suffix + 1`` for the suffix).
Token ids lay the positions side by side after the specials::

    0 = PAD, 1 = BOS, then level 1 codes, level 2 codes, ..., level L codes, suffix codes

so ``token = level_offsets[d] + code``. Items are indexed ``0..N-1`` in ``item_id`` order; a
full SID is packed into one int64 key (mixed radix over ``level_sizes``), and decoded keys map
back to items by ``searchsorted`` over the sorted keys (several items may share a key when a
table was published without suffixes; evaluation then ranks all of them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from simcit_dist.sids.manifest import SidManifest
from simcit_dist.sids.table import SIDTableError, code_columns, read_sid_table
from simcit_dist.storage import StorageConfig

log = logging.getLogger(__name__)

PAD, BOS = 0, 1
NUM_SPECIAL = 2


def lookup_index(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` in the ascending array ``sorted_ids``; -1 where absent."""
    if len(sorted_ids) == 0:
        return np.full(ids.shape, -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1)


@dataclass(frozen=True)
class SidLayout:
    """Token layout of a SID vocabulary (what a model needs to be rebuilt; stored with checkpoints)."""

    level_sizes: tuple[int, ...]  # (D,) codes per position; the last position is the suffix

    def __post_init__(self) -> None:
        if not self.level_sizes or min(self.level_sizes) < 1:
            raise ValueError(f"level_sizes must be positive, got {self.level_sizes}")
        if float(np.prod(np.asarray(self.level_sizes, dtype=np.float64))) >= 2.0**62:
            raise ValueError(f"SID space {self.level_sizes} does not fit an int64 key")

    @property
    def depth(self) -> int:
        return len(self.level_sizes)

    @property
    def level_offsets(self) -> tuple[int, ...]:
        offsets, at = [], NUM_SPECIAL
        for size in self.level_sizes:
            offsets.append(at)
            at += size
        return tuple(offsets)

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL + sum(self.level_sizes)

    def to_dict(self) -> dict[str, Any]:
        return {"level_sizes": list(self.level_sizes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SidLayout:
        return cls(tuple(int(s) for s in data["level_sizes"]))

    @classmethod
    def from_manifest(cls, manifest: SidManifest) -> SidLayout:
        return cls((*manifest.level_sizes(), manifest.max_suffix + 1))

    def keys(self, codes: np.ndarray) -> np.ndarray:
        """(..., D) local codes -> (...) int64 keys (mixed radix, lexicographic order preserved)."""
        key = np.zeros(codes.shape[:-1], dtype=np.int64)
        for d, size in enumerate(self.level_sizes):
            key = key * size + codes[..., d].astype(np.int64)
        return key

    def tokens(self, codes: np.ndarray) -> np.ndarray:
        """(..., D) local codes -> (..., D) token ids."""
        return codes.astype(np.int64) + np.asarray(self.level_offsets, dtype=np.int64)


@dataclass
class SidCatalog:
    """Items of one SID table version, as arrays (N items, D positions)."""

    layout: SidLayout
    item_ids: np.ndarray  # (N,) int64, sorted ascending; index = the item's index
    codes: np.ndarray  # (N, D) int64 local codes (c1..cL, suffix)
    version: str = ""
    # Derived: items grouped by full SID key.
    sorted_keys: np.ndarray | None = None  # (U,) unique keys, ascending
    key_start: np.ndarray | None = None  # (U + 1,) CSR offsets into key_items
    key_items: np.ndarray | None = None  # (N,) item indices grouped by key

    def __post_init__(self) -> None:
        n, depth = self.codes.shape
        if depth != self.layout.depth or self.item_ids.shape != (n,):
            raise SIDTableError(f"codes {self.codes.shape} / item_ids {self.item_ids.shape} do not fit "
                                f"{self.layout.depth} SID positions")
        sizes = np.asarray(self.layout.level_sizes)
        bad = (self.codes < 0) | (self.codes >= sizes)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise SIDTableError(f"item {self.item_ids[row]}: code {self.codes[row, col]} at position {col + 1} "
                                f"is outside [0, {sizes[col]})")
        if n > 1 and not (np.diff(self.item_ids) > 0).all():
            raise SIDTableError("SID table has duplicate item_id rows (or was not sorted)")
        keys = self.layout.keys(self.codes)
        order = np.argsort(keys, kind="stable")
        uniq, start = np.unique(keys[order], return_index=True)
        self.sorted_keys = uniq
        self.key_start = np.append(start, n).astype(np.int64)
        self.key_items = order.astype(np.int64)
        if len(uniq) < n:
            log.warning("SID table %s: %d items share a full SID with another item; evaluation ranks every "
                        "item of a decoded SID", self.version, n - len(uniq))

    @property
    def num_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def unique_codes(self) -> np.ndarray:
        """(U, D) local codes of the distinct full SIDs, in key (lexicographic) order."""
        assert self.key_items is not None and self.key_start is not None
        return self.codes[self.key_items[self.key_start[:-1]]]

    def index_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Item indices of ``item_ids``; -1 where an item has no SID."""
        return lookup_index(self.item_ids, np.asarray(item_ids, dtype=np.int64))

    def item_tokens(self, index: np.ndarray) -> np.ndarray:
        """(...,) item indices (-1 = padding) -> (..., D) token ids (PAD for padding)."""
        index = np.asarray(index)
        tokens = self.layout.tokens(self.codes[np.maximum(index, 0)])
        return np.where((index >= 0)[..., None], tokens, PAD)

    def items_of_keys(self, keys: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
        """Ranked SID keys -> ranked item indices, item-level.

        keys, valid: (B, W) decoded full-SID keys in rank order; invalid or unknown keys are
        skipped. Each known key expands to all its items (one, when SIDs are unique).
        Returns (B, k) item indices, -1 padded.
        """
        assert self.sorted_keys is not None and self.key_start is not None and self.key_items is not None
        b, w = keys.shape
        pos = np.searchsorted(self.sorted_keys, keys)
        pos_c = np.minimum(pos, max(len(self.sorted_keys) - 1, 0))
        known = valid & (len(self.sorted_keys) > 0) & (self.sorted_keys[pos_c] == keys)
        counts = np.where(known, self.key_start[pos_c + 1] - self.key_start[pos_c], 0)  # (B, W)
        out = np.full((b, k), -1, dtype=np.int64)
        total = int(counts.sum())
        if total == 0:
            return out
        flat_counts = counts.reshape(-1)
        row = np.repeat(np.arange(b * w) // w, flat_counts)  # user of each expanded item
        first = np.repeat(self.key_start[pos_c.reshape(-1)], flat_counts)
        within = np.arange(total) - np.repeat(np.cumsum(flat_counts) - flat_counts, flat_counts)
        items = self.key_items[first + within]
        # Rank of each expanded item within its user's list.
        user_start = np.cumsum(counts.sum(axis=1)) - counts.sum(axis=1)
        rank = np.arange(total) - user_start[row]
        keep = rank < k
        out[row[keep], rank[keep]] = items[keep]
        return out


def catalog_from_table(table: pa.Table, manifest: SidManifest) -> SidCatalog:
    """Build a :class:`SidCatalog` from a SID table and its manifest."""
    layout = SidLayout.from_manifest(manifest)
    cols = [*code_columns(manifest.num_levels), "suffix"]
    item_ids = table.column("item_id").to_numpy().astype(np.int64)
    codes = np.stack([table.column(c).to_numpy().astype(np.int64) for c in cols], axis=1) if len(table) \
        else np.zeros((0, len(cols)), dtype=np.int64)
    order = np.argsort(item_ids, kind="stable")
    return SidCatalog(layout, item_ids[order], codes[order], version=manifest.version)


def load_catalog(sid_root: str, storage: StorageConfig | None = None, version: str | None = None) -> SidCatalog:
    """Read a published SID table (``version`` or LATEST) into a :class:`SidCatalog`."""
    table, manifest = read_sid_table(sid_root, storage, version)
    catalog = catalog_from_table(table, manifest)
    log.info("SID table %s version %s: %d items, positions %s", sid_root, catalog.version, catalog.num_items,
             catalog.layout.level_sizes)
    return catalog
