"""The items SASRec ranks: the catalog table's item ids, sorted, with a fingerprint.

SASRec learns one embedding per item, so its whole catalog is one (N,) id array in memory (an
N x d embedding table has to be anyway). The fingerprint names the item set: a sequence table or
a checkpoint built against one item set is never read against another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from simcit_dist.data.fingerprint import combine
from simcit_dist.data.parquet_io import check_files, read_schema, read_table
from simcit_dist.data.schemas import ITEM_ID, SchemaError
from simcit_dist.storage import StorageConfig, resolve


@dataclass
class ItemCatalog:
    item_ids: np.ndarray  # (N,) int64 ascending; index = the item's index
    version: str  # "items-<N>-<hash>" of the ids

    @property
    def num_items(self) -> int:
        return int(self.item_ids.shape[0])


def item_catalog(ids: np.ndarray) -> ItemCatalog:
    """Sorted, de-duplicated ``ids`` and their fingerprint."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    digest = int(np.bitwise_xor.reduce(combine([ids]))) if len(ids) else 0
    return ItemCatalog(ids, f"items-{len(ids)}-{digest & (2**64 - 1):016x}")


def load_item_catalog(catalog: str, storage: StorageConfig | None = None) -> ItemCatalog:
    """The item ids of a catalog table (only its ``item_id`` column is read)."""
    loc = resolve(catalog, storage)
    check_files(loc)
    if ITEM_ID not in read_schema(loc).names:
        raise SchemaError(f"{loc.uri}: no column '{ITEM_ID}' (SASRec ranks the items of a catalog table)")
    column = read_table(loc, columns=[ITEM_ID]).column(ITEM_ID)
    if column.null_count:
        raise SchemaError(f"{loc.uri}: column '{ITEM_ID}' has {column.null_count} nulls")
    out = item_catalog(pc.cast(column, "int64").to_numpy())
    if out.num_items == 0:
        raise SchemaError(f"{loc.uri}: the catalog has no items")
    return out
