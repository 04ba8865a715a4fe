"""Parquet reading and writing through the storage layer (one reader, one writer for the project)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from simcit_dist.failures import meaning
from simcit_dist.storage import Location, StorageConfig, is_dir, list_files, resolve

if TYPE_CHECKING:
    import ray.data

# Row groups of ~64k rows keep reads streaming-friendly without tiny pages.
ROW_GROUP_ROWS = 65_536
FOOTER_THREADS = 16  # footers are tiny: parallel reads hide the object store's per-request latency


class BadFileError(ValueError):
    """One input file is unreadable (corrupt, truncated, empty, not Parquet); the message names it."""


@contextlib.contextmanager
def naming(loc: Location) -> Iterator[None]:
    """Re-raise a read error of ``loc`` as :class:`BadFileError` naming its URI (Arrow's own
    messages often name no file at all: "Parquet magic bytes not found in footer")."""
    try:
        yield
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise FileNotFoundError(f"{loc.uri}: no such file") from e
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        what = meaning(detail) or "unreadable Parquet file"
        raise BadFileError(f"{loc.uri}: {what} ({detail})") from e


def write_table(table: pa.Table, loc: Location) -> None:
    """Write one Parquet file (parent directories are created on local storage)."""
    if not loc.is_s3:
        loc.fs.create_dir(loc.path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, loc.path, filesystem=loc.fs, row_group_size=ROW_GROUP_ROWS)


def parquet_files(loc: Location) -> list[Location]:
    """The Parquet files of a table: a single file, or every ``*.parquet`` below a prefix."""
    if loc.path.endswith(".parquet") and not is_dir(loc):
        return [loc]
    files = list_files(loc, suffix=".parquet")
    if not files:
        raise FileNotFoundError(f"{loc.uri}: no .parquet files found")
    return files


def read_schema(loc: Location) -> pa.Schema:
    """Schema of the first file of a table (files of one table share it)."""
    return file_schema(parquet_files(loc)[0])


def file_schema(loc: Location) -> pa.Schema:
    """Schema of one Parquet file, from its footer."""
    with naming(loc):
        return pq.read_schema(loc.path, filesystem=loc.fs)


def read_file(loc: Location, columns: Sequence[str] | None = None, use_threads: bool = True) -> pa.Table:
    """Read one Parquet file whole.

    ``pq.read_table`` goes through the dataset API (discovery, a fragment, a scanner): ~0.8 ms a
    file against ~0.25 ms here on local disk, which adds up over many small files.
    ``use_threads=False`` in one-CPU Ray tasks, where decoding threads only compete with the
    other tasks.
    """
    with naming(loc), loc.fs.open_input_file(loc.path) as f:
        return pq.ParquetFile(f).read(columns=list(columns) if columns else None, use_threads=use_threads)


def file_rows(loc: Location) -> int:
    """Row count of one Parquet file from its footer (no data read)."""
    with naming(loc), loc.fs.open_input_file(loc.path) as f:
        return int(pq.ParquetFile(f).metadata.num_rows)


def check_files(loc: Location) -> list[tuple[Location, int]]:
    """Every file of a table with its row count, read from the footers in parallel: a corrupt,
    truncated or empty file fails here in seconds, naming it, before an expensive stage starts.
    Several bad files are reported together (how many, and the first in path order)."""
    files = parquet_files(loc)

    def footer(f: Location) -> tuple[Location, int | BaseException]:
        try:
            return f, file_rows(f)
        except (BadFileError, FileNotFoundError) as e:
            return f, e

    with ThreadPoolExecutor(min(FOOTER_THREADS, len(files))) as pool:
        results = list(pool.map(footer, files))
    bad = [e for _, e in results if isinstance(e, BaseException)]
    if bad:
        more = f" ({len(bad)} of {len(files)} files are unreadable; this is the first)" if len(bad) > 1 else ""
        raise BadFileError(f"{bad[0]}{more}") from bad[0]
    return [(f, n) for f, n in results if isinstance(n, int)]


def count_rows(loc: Location) -> int:
    """Row count of a table from its files' footers only (no data read)."""
    return sum(file_rows(f) for f in parquet_files(loc))


def read_table(loc: Location, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a whole (small) table: manifests, test fixtures, SID lookups of bounded size."""
    tables = [read_file(f, columns) for f in parquet_files(loc)]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def iter_file_batches(loc: Location, columns: Sequence[str] | None = None,
                      batch_rows: int = ROW_GROUP_ROWS) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Stream one file as (first row number, batch), so checks can name the row they reject."""
    with naming(loc), loc.fs.open_input_file(loc.path) as f:
        reader = pq.ParquetFile(f)
        row = 0
        for batch in reader.iter_batches(batch_size=batch_rows, columns=list(columns) if columns else None):
            yield row, batch
            row += batch.num_rows


def read_dataset(uri: str | Location, storage: StorageConfig | None = None, columns: Sequence[str] | None = None,
                 shuffle_files: bool = False, seed: int | None = None) -> ray.data.Dataset:
    """A streaming Ray Dataset over a Parquet table, read through the project's filesystem.

    ``shuffle_files`` randomises file order (per epoch when the dataset is re-iterated with a
    new seed); row-level mixing comes from the consumer's local shuffle buffer.
    """
    import ray.data

    loc = uri if isinstance(uri, Location) else resolve(uri, storage)
    paths = [f.path for f in parquet_files(loc)]
    shuffle = ray.data.FileShuffleConfig(seed=seed) if shuffle_files else None
    with _datasource_v1():
        return ray.data.read_parquet(paths, filesystem=loc.fs, columns=list(columns) if columns else None,
                                     shuffle=shuffle)


@contextlib.contextmanager
def _datasource_v1() -> Iterator[None]:
    """Build the read with Ray Data's V1 Parquet datasource. The V2 default of Ray 2.60 lists files in
    one task per given path, and each listing task starts a pool of 32 ``FooterReader`` actors (new
    worker processes) that it kills when done: ~5 s of fixed cost per read on a 2-core machine, tens
    of process starts per read on any machine. We hand Ray the file list ourselves, so V1 (metadata
    from that list, one in-memory size sample) is all a read needs. The choice is made when the
    read is built, so the user's own DataContext setting is restored right after."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    before = ctx.use_datasource_v2
    ctx.use_datasource_v2 = False
    try:
        yield
    finally:
        ctx.use_datasource_v2 = before
