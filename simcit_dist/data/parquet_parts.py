"""Streamed Parquet parts and key-partitioned scratch files (the shuffle behind prepare_data's checks).

:class:`PartWriter` writes one Parquet file batch by batch, so a task converting a 10 GB input
holds one batch, not the file. :func:`write_partitioned` writes a table sorted by a small
integer key with one row group per key value, and returns key -> row group; a consumer of key
``k`` then reads exactly its row groups from every scratch file (:func:`read_partition`).
That is a hash shuffle through storage without one file per (producer, bucket) pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simcit_dist.data.fingerprint import mix64
from simcit_dist.data.parquet_io import ROW_GROUP_ROWS
from simcit_dist.storage import Location


class PartWriter:
    """One Parquet file written in batches (row groups of ``ROW_GROUP_ROWS``); empty parts keep the schema."""

    def __init__(self, loc: Location, schema: pa.Schema) -> None:
        self.loc = loc
        self.schema = schema
        self.rows = 0
        if not loc.is_s3:
            loc.fs.create_dir(loc.path.rsplit("/", 1)[0], recursive=True)
        self._writer = pq.ParquetWriter(loc.path, schema, filesystem=loc.fs)

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        if table.num_rows:
            self._writer.write_table(table.select(self.schema.names).cast(self.schema), row_group_size=ROW_GROUP_ROWS)
            self.rows += table.num_rows

    def close(self) -> int:
        self._writer.close()
        return self.rows

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def hash_bucket(ids: np.ndarray, num_buckets: int) -> np.ndarray:
    """Bucket of each int64 id: a splitmix64 mix, so sequential or strided ids spread evenly."""
    x = mix64(np.asarray(ids, dtype=np.int64).view(np.uint64))
    return (x % np.uint64(num_buckets)).astype(np.int32)


def write_partitioned(table: pa.Table, keys: np.ndarray, loc: Location) -> dict[int, int]:
    """Write ``table`` grouped by ``keys`` (one row group per key); returns key -> row group index."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = np.asarray(keys)[order]
    table = table.take(pa.array(order))
    uniq, starts = np.unique(sorted_keys, return_index=True)
    bounds = list(starts) + [len(sorted_keys)]
    if not loc.is_s3:
        loc.fs.create_dir(loc.path.rsplit("/", 1)[0], recursive=True)
    with pq.ParquetWriter(loc.path, table.schema, filesystem=loc.fs) as writer:
        for i in range(len(uniq)):
            n = int(bounds[i + 1] - bounds[i])
            writer.write_table(table.slice(int(bounds[i]), n), row_group_size=max(n, 1))
    return {int(k): i for i, k in enumerate(uniq)}


def read_partition(parts: Sequence[tuple[Location, int]], schema: pa.Schema) -> pa.Table:
    """Concatenate the given (file, row group) pieces; an empty table of ``schema`` if there are none."""
    tables = []
    for loc, row_group in parts:
        with loc.fs.open_input_file(loc.path) as f:
            tables.append(pq.ParquetFile(f).read_row_group(row_group))
    return pa.concat_tables(tables) if tables else schema.empty_table()
