"""A hash-partitioned exchange through storage: the distributed group-by of SID assignment.

Stage 1 writers (a Ray Data sink, or stage tasks) split their rows by ``hash(key) % P`` and
write **one exchange file per writer**: every non-empty partition's rows as one complete
Parquet segment, back to back, then an index of P + 1 byte offsets and a trailer (P, magic).
Stage 2 runs one Ray task per partition that reads only its own segment of every file (a
ranged read located by the index), so a group (all rows with one key) is complete in exactly
one task, and memory per task is bounded by catalog / P — never the whole catalog in one
process. Stage 2 sorts its rows before deciding anything, so the result does not depend on how
rows were split into blocks, tasks or files.

This is Spark's shuffle-file layout (one data file plus an index per map task). The earlier
layout, one Parquet file per (writer, partition), made P x W objects per exchange: ~1M PUTs a
night at the AL-GR preset's P = 1024, against ~P here. Ray Data's own hash shuffle keeps
partitions in the object store and calls a UDF per group; writing to storage instead keeps
object-store memory flat and works the same on local disk and S3.

A file appears whole or not at all: locally it is written under a hidden name and renamed; on
S3 a multipart upload becomes visible only when completed, and a writer that fails deletes
what it completed. A reader still checks every file's trailer and index against its size and
names the file if they disagree. Writers name their file deterministically (the sink by its
task index), so a retried task overwrites its own file instead of adding duplicate rows.
"""

from __future__ import annotations

import posixpath
import struct
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data import Datasink
from ray.data.block import Block, BlockAccessor

from simcit_dist.data.fingerprint import partition_of
from simcit_dist.storage import Location, exists, list_files

SUFFIX = ".exch"
MAGIC = b"SIMCITX1"
_TRAILER = struct.Struct("<q8s")  # (number of partitions, magic), after the P + 1 int64 offsets
TAIL_READ_BYTES = 65_536  # on S3 one ranged read takes the trailer and the index of up to 8,189 partitions
FETCH_THREADS = 16  # files a partition's reader fetches at once from object storage


def split_by_partition(table: pa.Table, key_columns: Sequence[str], num_partitions: int
                       ) -> Iterable[tuple[int, pa.Table]]:
    """(partition, rows) for every non-empty partition of ``table``, in increasing partition order."""
    if table.num_rows == 0:
        return
    keys = [table.column(c).to_numpy(zero_copy_only=False) for c in key_columns]
    part = partition_of(keys, num_partitions)
    order = np.argsort(part, kind="stable")
    sorted_part = part[order]
    bounds = np.flatnonzero(np.diff(sorted_part)) + 1
    for chunk in np.split(order, bounds):
        yield int(part[chunk[0]]), table.take(pa.array(chunk))


def _segment(rows: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink)
    return sink.getvalue()


def write_partitions(table: pa.Table, exchange: Location, key_columns: Sequence[str], num_partitions: int,
                     name: str) -> int:
    """Write ``table``'s rows as one exchange file ``<exchange>/<name>.exch`` (nothing when empty).

    ``name`` must be unique among the exchange's writers and the same when a writer is retried;
    readers select files by the part of the name before its first ``-`` (the tag)."""
    if table.num_rows == 0:
        return 0
    target = exchange.child(name + SUFFIX)
    ends = np.zeros(num_partitions, np.int64)
    if target.is_s3:
        written = target
    else:  # hidden while being written: list_files skips names starting with "_"
        target.fs.create_dir(exchange.path, recursive=True)
        written = exchange.child(f"_{uuid.uuid4().hex}-{name}{SUFFIX}")
    try:
        with target.fs.open_output_stream(written.path) as out:
            position = 0
            for partition, rows in split_by_partition(table, key_columns, num_partitions):
                segment = _segment(rows)
                out.write(segment)
                position += segment.size
                ends[partition] = position
            # Segments were written in partition order: partition p spans offsets[p]..offsets[p+1],
            # and an empty partition's span is empty (its end repeats the previous one's).
            offsets = np.concatenate([[0], np.maximum.accumulate(ends)]).astype("<i8")
            out.write(offsets.tobytes())
            out.write(_TRAILER.pack(num_partitions, MAGIC))
        if written is not target:
            target.fs.move(written.path, target.path)
    except BaseException:
        if exists(written):  # on S3 the failed stream's close completed the upload
            written.fs.delete_file(written.path)
        raise
    return table.num_rows


class ExchangeSink(Datasink[int]):
    """Ray Data sink of stage 1: ``dataset.write_datasink(ExchangeSink(...))``; one file per write task."""

    def __init__(self, exchange: Location, key_columns: Sequence[str], num_partitions: int, tag: str,
                 min_rows_per_write: int = 262_144) -> None:
        if "-" in tag:
            raise ValueError(f"exchange tag {tag!r} must not contain '-' (it ends the tag in file names)")
        self.exchange = exchange
        self.key_columns = list(key_columns)
        self.num_partitions = num_partitions
        self.tag = tag
        self._write_id = uuid.uuid4().hex[:12]  # this write's files, whatever an earlier one left
        self._min_rows = min_rows_per_write
        self.rows_written = 0

    def write(self, blocks: Iterable[Block], ctx: Any) -> int:
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return 0
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
        name = f"{self.tag}-{self._write_id}-{ctx.task_idx:06d}"
        return write_partitions(table, self.exchange, self.key_columns, self.num_partitions, name)

    def on_write_complete(self, write_result: Any) -> None:
        self.rows_written = int(sum(write_result.write_returns))

    @property
    def min_rows_per_write(self) -> int:
        return self._min_rows

    def get_name(self) -> str:
        return f"Exchange({self.tag})"


def exchange_files(exchange: Location, tag: str | None = None) -> list[Location]:
    """The exchange's files (of one tag: names ``<tag>-...``), in name order."""
    files = list_files(exchange, suffix=SUFFIX, recursive=False)
    if tag is not None:
        files = [f for f in files if posixpath.basename(f.path).startswith(tag + "-")]
    return files


def read_partition(exchange: Location, partition: int, tag: str | None = None,
                   columns: Sequence[str] | None = None, fetch_threads: int = FETCH_THREADS) -> pa.Table | None:
    """All rows of one partition (optionally only files of one tag); None when empty.
    ``fetch_threads``: files fetched at once from object storage (local files: one at a time)."""
    files = exchange_files(exchange, tag)
    if not files:
        return None
    fetch = partial(_fetch_segment, partition=partition)
    if files[0].is_s3 and len(files) > 1 and fetch_threads > 1:
        # On S3 a file costs three sequential round trips (open, index, segment) and a partition
        # reads one segment from every writer's file: fetched one file after another, a task at
        # the AL-GR preset's ~1k writers would wait about a minute on latency alone. Fetch many
        # at once (the waits release the GIL) and decode here, one segment at a time, in file
        # order. Local files are read in place: there threads only add hand-offs.
        with ThreadPoolExecutor(max_workers=min(fetch_threads, len(files))) as pool:
            tables = [_decode(s, columns) for s in pool.map(fetch, files) if s is not None]
    else:
        tables = [_decode(s, columns) for s in map(fetch, files) if s is not None]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


def _fetch_segment(loc: Location, partition: int) -> pa.Buffer | None:
    """The bytes of ``partition``'s segment in one exchange file (None when it is empty)."""
    with loc.fs.open_input_file(loc.path) as f:
        size = f.size()
        if size < 8 + _TRAILER.size:
            raise ValueError(f"{loc.uri}: {size} bytes, not a complete exchange file (no trailer)")
        # Object storage: one ranged read takes the trailer and, unless P is huge, the whole index
        # (a request costs a round trip); a local file: the trailer alone, then the two offsets.
        tail_size = min(size, TAIL_READ_BYTES if loc.is_s3 else 8 + _TRAILER.size)
        tail = f.read_at(tail_size, size - tail_size)
        num_partitions, magic = _TRAILER.unpack(tail[-_TRAILER.size:])
        index_size = 8 * (num_partitions + 1)
        index_at = size - _TRAILER.size - index_size
        if magic != MAGIC or num_partitions < 1 or index_at < 0:
            raise ValueError(f"{loc.uri}: not a complete exchange file (trailer {magic!r}, expected {MAGIC!r})")
        if not 0 <= partition < num_partitions:
            raise ValueError(f"{loc.uri}: partition {partition} asked of an exchange of {num_partitions}")
        last = int.from_bytes(tail[-_TRAILER.size - 8:-_TRAILER.size], "little", signed=True)  # offsets[P]
        if index_size + _TRAILER.size <= tail_size:
            index = np.frombuffer(tail[tail_size - _TRAILER.size - index_size:tail_size - _TRAILER.size], "<i8")
            start, end = int(index[partition]), int(index[partition + 1])
        else:
            start, end = (int(v) for v in np.frombuffer(f.read_at(16, index_at + 8 * partition), "<i8"))
        if last != index_at or not 0 <= start <= end <= last:
            raise ValueError(f"{loc.uri}: exchange index does not match the file ({last} bytes of segments "
                             f"indexed, {index_at} present)")
        if end == start:
            return None
        f.seek(start)
        return f.read_buffer(end - start)  # an Arrow buffer: no copy into Python bytes


def _decode(segment: pa.Buffer, columns: Sequence[str] | None) -> pa.Table:
    # One-CPU Ray tasks: decoding threads would only compete with the other tasks.
    return pq.ParquetFile(pa.BufferReader(segment)).read(columns=list(columns) if columns else None,
                                                          use_threads=False)
