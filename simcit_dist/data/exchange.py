"""A hash-partitioned exchange through storage: the distributed group-by of SID assignment.

Stage 1 is a Ray Data sink: every write task splits its rows by ``hash(key) % P`` and writes
one Parquet file per non-empty partition under ``<exchange>/p=<p>/``. Stage 2 runs one Ray
task per partition that reads only its own files, so a group (all rows with one key) is
complete in exactly one task, and memory per task is bounded by catalog / P — never the whole
catalog in one process. Stage 2 sorts its rows before deciding anything, so the result does not
depend on how rows were split into blocks, tasks or files.

This is Spark's shuffle-file pattern. Ray Data's own hash shuffle (``groupby``/``repartition``
with keys) keeps partitions in the object store and calls a UDF per group; writing to
storage instead keeps object-store memory flat and works the same on local disk and S3.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data import Datasink
from ray.data.block import Block, BlockAccessor

from simcit_dist.data.fingerprint import partition_of
from simcit_dist.data.parquet_io import read_file
from simcit_dist.storage import Location, list_files


def partition_dir(exchange: Location, partition: int) -> Location:
    return exchange.child(f"p={partition:05d}")


def split_by_partition(table: pa.Table, key_columns: Sequence[str], num_partitions: int
                       ) -> Iterable[tuple[int, pa.Table]]:
    """(partition, rows) for every non-empty partition of ``table``."""
    if table.num_rows == 0:
        return
    keys = [table.column(c).to_numpy(zero_copy_only=False) for c in key_columns]
    part = partition_of(keys, num_partitions)
    order = np.argsort(part, kind="stable")
    sorted_part = part[order]
    bounds = np.flatnonzero(np.diff(sorted_part)) + 1
    for chunk in np.split(order, bounds):
        yield int(part[chunk[0]]), table.take(pa.array(chunk))


def write_partitions(table: pa.Table, exchange: Location, key_columns: Sequence[str], num_partitions: int,
                     tag: str) -> int:
    """Write ``table``'s rows into their partitions (file names are unique per call)."""
    name = f"{tag}-{uuid.uuid4().hex}.parquet"
    for partition, rows in split_by_partition(table, key_columns, num_partitions):
        target = partition_dir(exchange, partition).child(name)
        if not target.is_s3:
            target.fs.create_dir(partition_dir(exchange, partition).path, recursive=True)
        pq.write_table(rows, target.path, filesystem=target.fs)
    return table.num_rows


class ExchangeSink(Datasink[int]):
    """Ray Data sink of stage 1: ``dataset.write_datasink(ExchangeSink(...))``."""

    def __init__(self, exchange: Location, key_columns: Sequence[str], num_partitions: int, tag: str,
                 min_rows_per_write: int = 262_144) -> None:
        self.exchange = exchange
        self.key_columns = list(key_columns)
        self.num_partitions = num_partitions
        self.tag = tag
        self._min_rows = min_rows_per_write
        self.rows_written = 0

    def write(self, blocks: Iterable[Block], ctx: Any) -> int:
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return 0
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
        return write_partitions(table, self.exchange, self.key_columns, self.num_partitions, self.tag)

    def on_write_complete(self, write_result: Any) -> None:
        self.rows_written = int(sum(write_result.write_returns))

    @property
    def min_rows_per_write(self) -> int:
        return self._min_rows

    def get_name(self) -> str:
        return f"Exchange({self.tag})"


def read_partition(exchange: Location, partition: int, tag: str | None = None,
                   columns: Sequence[str] | None = None) -> pa.Table | None:
    """All rows of one partition (optionally only files of one tag); None when empty."""
    files = list_files(partition_dir(exchange, partition), suffix=".parquet")
    if tag is not None:
        files = [f for f in files if f.path.rsplit("/", 1)[-1].startswith(tag + "-")]
    if not files:
        return None
    tables = [read_file(f, columns, use_threads=False) for f in files]  # P files per partition: keep each cheap
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
