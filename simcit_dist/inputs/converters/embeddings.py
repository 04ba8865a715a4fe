"""Bring your own embeddings: an item-embedding file from the user's own model -> one more catalog
modality, joined to an existing catalog by item id (``source: embeddings`` of ``jobs/convert.py``).

Inputs (``embeddings.input``):

- ``.npy``: a float (N, d) array, with ``embeddings.ids`` a (N,) integer ``.npy`` giving each
  row's item id. Both are read in row ranges (``rows_per_task`` per Ray task, ranged reads of the
  raw array bytes), so the file may be larger than any worker's memory;
- ``.pt``: ``torch.save`` of a dict with an integer ``ids`` tensor and a float ``embeddings``
  (N, d) tensor (or a bare (N, d) tensor with ``embeddings.ids``). A pickle has no row layout:
  it is loaded whole in the driver (``weights_only``), so use .npy or Parquet past a few GB;
- Parquet (a file or a prefix, e.g. a feature-store export): ``id_column`` and
  ``embedding_column`` (a fixed-size or variable float list), one Ray task per file.

Every row is checked like a catalog row (null id, wrong dimension, NaN/Inf, all-zero vector)
and rejected with its file and row; then one round of the storage exchange
(:mod:`simcit_dist.data.exchange`) brings catalog rows and embedding rows with the same id to
one task, which rejects a second row for an id (``duplicate_item_id``, the first by file and
row is kept) and ids the catalog does not have (``unknown_item``), and writes the catalog's rows
with the new column (null where an item has no embedding; counted as a missing modality).
Memory per task ~ (catalog + embeddings) / ``num_partitions``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from simcit_dist.data.exchange import ExchangeSink, read_partition, write_partitions
from simcit_dist.data.id_lookup import find_sorted
from simcit_dist.data.parquet_io import (
    check_files,
    file_schema,
    iter_file_batches,
    read_dataset,
    write_table,
)
from simcit_dist.data.rejects import DUPLICATE_ITEM_ID, UNKNOWN_ITEM, RejectBuffer
from simcit_dist.data.run_output import RunReport, scratch_dir
from simcit_dist.data.schemas import ITEM_ID, REJECTS_SCHEMA, SchemaError, embedding_type
from simcit_dist.data.task_gather import gather
from simcit_dist.inputs.config import EmbeddingsConfig
from simcit_dist.inputs.validate import check_catalog_batch
from simcit_dist.storage import Location, StorageConfig, read_bytes, resolve

log = logging.getLogger(__name__)
FILE, ROW = "_file", "_row"  # where an embedding row came from (an index into the source files, its row)


@dataclass(frozen=True)
class NpyArray:
    """Layout of a C-ordered .npy: rows of ``row_bytes`` from byte ``offset``."""

    loc: Location
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        with self.loc.fs.open_input_file(self.loc.path) as f:
            data = f.read_at((stop - start) * self.row_bytes, self.offset + start * self.row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape((stop - start, *self.shape[1:]))


def npy_layout(loc: Location) -> NpyArray:
    """Shape, dtype and data offset from a .npy header (never unpickles)."""
    with loc.fs.open_input_file(loc.path) as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
        except ValueError as e:
            raise SchemaError(f"{loc.uri}: not a .npy array ({e})") from e
        offset = f.tell()
        size = f.size()
    if fortran or dtype.hasobject:
        raise SchemaError(f"{loc.uri}: expected a C-ordered numeric array, got "
                          f"{'Fortran order' if fortran else 'objects'}")
    array = NpyArray(loc, tuple(shape), dtype, offset)
    if offset + array.shape[0] * array.row_bytes > size:
        raise SchemaError(f"{loc.uri}: truncated: the header promises {shape} {dtype}, the file has {size} bytes")
    return array


def convert_embeddings(cfg: EmbeddingsConfig, storage: StorageConfig | None, staged: Location,
                       report: RunReport) -> None:
    catalog = resolve(cfg.catalog, storage)
    cat_files = check_files(catalog)
    if cfg.column in file_schema(cat_files[0][0]).names:
        raise SchemaError(f"{catalog.uri}: the catalog already has a column {cfg.column!r}; "
                          f"name the new modality with embeddings.column")
    scratch = scratch_dir(staged).child("exchange")
    ingested = _ingest(cfg, storage, scratch)
    sources, dim = ingested.sources, ingested.dim
    cat_sink = ExchangeSink(scratch, [ITEM_ID], cfg.num_partitions, "cat")
    read_dataset(catalog).write_datasink(cat_sink)
    results = gather([_join.remote(scratch, p, staged.child("catalog"), cfg.column, dim, sources)
                      for p in range(cfg.num_partitions)])
    rejects = [t for t in [*ingested.rejects, *(r["rejects"] for r in results)] if t.num_rows]
    if any(t.num_rows for t in rejects):
        write_table(pa.concat_tables(rejects).sort_by([("source_file", "ascending"), ("row", "ascending")]),
                    staged.child("rejects", "embeddings.parquet"))
    emb, cat = report.table("embeddings"), report.table("catalog")
    emb.input_rows, emb.files = ingested.rows, len(sources)
    emb.output_rows = sum(r["joined"] for r in results)
    for t in rejects:
        reasons, counts = np.unique(t.column("reason").to_numpy(zero_copy_only=False), return_counts=True)
        emb.add_rejects(dict(zip(reasons.tolist(), counts.tolist())))
    cat.input_rows = cat.output_rows = sum(r["catalog_rows"] for r in results)
    cat.files = len(cat_files)
    cat.missing_modality[cfg.column] = sum(r["missing"] for r in results)
    cat.notes["joined_column"] = f"{cfg.column} ({dim}-d) from {cfg.input}"
    log.info("embeddings: %d of %d catalog items got %s (%d-d); %d embedding rows rejected", emb.output_rows,
             cat.output_rows, cfg.column, dim, emb.rejected_rows)


@dataclass
class Ingested:
    sources: list[str]  # the embedding files; FILE indexes this list
    dim: int
    rows: int  # rows read
    rejects: list[pa.Table]  # rows failing the row checks (REJECTS_SCHEMA)


def _ingest(cfg: EmbeddingsConfig, storage: StorageConfig | None, scratch: Location) -> Ingested:
    """Write every valid embedding row to the exchange (tag ``emb``)."""
    loc = resolve(cfg.input, storage)
    name = loc.path.lower()
    if name.endswith(".npy"):
        return _ingest_npy(cfg, loc, resolve(_need_ids(cfg), storage), scratch)
    if name.endswith((".pt", ".pth")):
        return _ingest_torch(cfg, loc, storage, scratch)
    return _ingest_parquet(cfg, loc, scratch)


def _need_ids(cfg: EmbeddingsConfig) -> str:
    if not cfg.ids:
        raise SchemaError(f"{cfg.input}: an embedding array needs embeddings.ids, the (N,) .npy of its rows' item ids")
    return cfg.ids


def _check_arrays(emb_shape: tuple[int, ...], emb_dtype: np.dtype, ids_shape: tuple[int, ...], ids_dtype: np.dtype,
                  emb_uri: str, ids_uri: str) -> None:
    if len(emb_shape) != 2 or emb_dtype.kind != "f" or emb_shape[1] < 1:
        raise SchemaError(f"{emb_uri}: expected a float (N, d) embedding array, got {emb_shape} {emb_dtype}")
    if len(ids_shape) != 1 or ids_dtype.kind not in "iu":
        raise SchemaError(f"{ids_uri}: expected an integer (N,) id array, got {ids_shape} {ids_dtype}")
    if ids_shape[0] != emb_shape[0]:
        raise SchemaError(f"{ids_uri}: {ids_shape[0]} ids for the {emb_shape[0]} rows of {emb_uri}")


def _ingest_npy(cfg: EmbeddingsConfig, loc: Location, ids_loc: Location, scratch: Location) -> Ingested:
    emb, ids = npy_layout(loc), npy_layout(ids_loc)
    _check_arrays(emb.shape, emb.dtype, ids.shape, ids.dtype, loc.uri, ids_loc.uri)
    n, dim = emb.shape
    ranges = [(s, min(s + cfg.rows_per_task, n)) for s in range(0, n, cfg.rows_per_task)]
    results = gather([_npy_task.remote(emb, ids, start, stop, dim, cfg.column, scratch, cfg.num_partitions, i)
                      for i, (start, stop) in enumerate(ranges)])
    return Ingested([loc.uri], dim, n, results)


@ray.remote
def _npy_task(emb: NpyArray, ids: NpyArray, start: int, stop: int, dim: int, column: str, scratch: Location,
              num_partitions: int, index: int) -> pa.Table:
    matrix = emb.read_rows(start, stop).astype(np.float32, copy=False)
    return _write_rows(ids.read_rows(start, stop), matrix, dim, column, emb.loc.uri, 0, start, scratch,
                       num_partitions, f"emb-n{index:06d}")


def _ingest_torch(cfg: EmbeddingsConfig, loc: Location, storage: StorageConfig | None, scratch: Location
                  ) -> Ingested:
    import io

    import torch

    try:
        obj = torch.load(io.BytesIO(read_bytes(loc)), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unpickling failure is a bad input file
        raise SchemaError(f"{loc.uri}: not a torch.save file of tensors ({type(e).__name__}: {e})") from e
    ids_uri = loc.uri
    if isinstance(obj, dict):
        if not {"ids", "embeddings"} <= set(obj):
            raise SchemaError(f"{loc.uri}: expected a dict with 'ids' and 'embeddings' tensors, got keys {sorted(obj)}")
        ids, matrix = obj["ids"], obj["embeddings"]
    elif isinstance(obj, torch.Tensor):
        ids_loc = resolve(_need_ids(cfg), storage)
        ids, ids_uri = npy_layout(ids_loc), ids_loc.uri
        ids = ids.read_rows(0, ids.shape[0])
        matrix = obj
    else:
        raise SchemaError(f"{loc.uri}: expected a tensor or a dict of tensors, got {type(obj).__name__}")
    ids = ids.numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    matrix = matrix.float().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    _check_arrays(matrix.shape, matrix.dtype, ids.shape, ids.dtype, loc.uri, ids_uri)
    n, dim = matrix.shape
    rejects = [_write_rows(ids[start:start + cfg.rows_per_task], matrix[start:start + cfg.rows_per_task], dim,
                           cfg.column, loc.uri, 0, start, scratch, cfg.num_partitions, f"emb-t{i:06d}")
               for i, start in enumerate(range(0, n, cfg.rows_per_task))]
    return Ingested([loc.uri], dim, n, rejects)


def _ingest_parquet(cfg: EmbeddingsConfig, loc: Location, scratch: Location) -> Ingested:
    files = [f for f, _ in check_files(loc)]
    schema = file_schema(files[0])
    for name in (cfg.id_column, cfg.embedding_column):
        if name not in schema.names:
            raise SchemaError(f"{loc.uri}: no column {name!r} (columns: {schema.names}); set embeddings.id_column / "
                              f"embeddings.embedding_column")
    id_type = schema.field(cfg.id_column).type
    if not pa.types.is_integer(id_type):
        raise SchemaError(f"{loc.uri}: id column {cfg.id_column!r} has type {id_type}, expected an integer")
    emb_type = schema.field(cfg.embedding_column).type
    dim = cfg.dim or (emb_type.list_size if pa.types.is_fixed_size_list(emb_type) else 0)
    if not dim:
        raise SchemaError(f"{loc.uri}: {cfg.embedding_column!r} is a variable-length list: set embeddings.dim")
    results = gather([_parquet_task.remote(f, i, cfg.id_column, cfg.embedding_column, dim, cfg.column, scratch,
                                           cfg.num_partitions) for i, f in enumerate(files)])
    return Ingested([f.uri for f in files], dim, sum(n for _, n in results), [t for t, _ in results])


@ray.remote
def _parquet_task(loc: Location, index: int, id_column: str, emb_column: str, dim: int, column: str,
                  scratch: Location, num_partitions: int) -> tuple[pa.Table, int]:
    rejects = RejectBuffer(loc.uri)
    kept, rows = [], 0
    for first, batch in iter_file_batches(loc, [id_column, emb_column]):
        batch = pa.RecordBatch.from_arrays(batch.columns, names=[ITEM_ID, column])
        kept.append(_checked_rows(batch, first, column, dim, index, rejects))
        rows += batch.num_rows
    if kept:
        write_partitions(pa.concat_tables(kept), scratch, [ITEM_ID], num_partitions, f"emb-p{index:06d}")
    return rejects.table(), rows


def _write_rows(ids: np.ndarray, matrix: np.ndarray, dim: int, column: str, uri: str, file_index: int,
                first_row: int, scratch: Location, num_partitions: int, name: str) -> pa.Table:
    """Check one range of array rows like catalog rows and write the valid ones to the exchange."""
    rejects = RejectBuffer(uri)
    values = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix, np.float32).reshape(-1)), dim)
    batch = pa.RecordBatch.from_arrays([pa.array(ids.astype(np.int64)), values], names=[ITEM_ID, column])
    write_partitions(_checked_rows(batch, first_row, column, dim, file_index, rejects), scratch, [ITEM_ID],
                     num_partitions, name)
    return rejects.table()


def _checked_rows(batch: pa.RecordBatch, first_row: int, column: str, dim: int, file_index: int,
                  rejects: RejectBuffer) -> pa.Table:
    """The rows of (item_id, column) that pass the catalog row checks, with where each came from."""
    checked = check_catalog_batch(batch, first_row, {column: dim}, rejects)
    table = checked.table(batch, checked.keep)
    return table.append_column(FILE, pa.array(np.full(table.num_rows, file_index, np.int32))) \
                .append_column(ROW, pa.array(first_row + np.flatnonzero(checked.keep), pa.int64()))


@ray.remote
def _join(scratch: Location, partition: int, out: Location, column: str, dim: int,
          sources: list[str]) -> dict[str, Any]:
    cat = read_partition(scratch, partition, "cat")
    emb = read_partition(scratch, partition, "emb")
    result: dict[str, Any] = {"joined": 0, "missing": 0, "catalog_rows": 0, "rejects": REJECTS_SCHEMA.empty_table()}
    if emb is not None and emb.num_rows:
        emb = emb.sort_by([(ITEM_ID, "ascending"), (FILE, "ascending"), (ROW, "ascending")])
        ids = emb.column(ITEM_ID).to_numpy()
        dup = np.zeros(len(ids), bool)
        dup[1:] = ids[1:] == ids[:-1]
        cat_ids = np.sort(cat.column(ITEM_ID).to_numpy()) if cat is not None else np.zeros(0, np.int64)
        known = find_sorted(cat_ids, ids)[1]
        firsts = np.flatnonzero(~dup)
        first_of = firsts[np.searchsorted(firsts, np.arange(len(ids)), side="right") - 1]
        files, rows = emb.column(FILE).to_numpy(), emb.column(ROW).to_numpy()
        rejected = [(np.flatnonzero(dup), DUPLICATE_ITEM_ID), (np.flatnonzero(~dup & ~known), UNKNOWN_ITEM)]
        details = {DUPLICATE_ITEM_ID: lambda i: (f"item_id {ids[i]} already has an embedding at "
                                                 f"{sources[files[first_of[i]]]} row {rows[first_of[i]]}"),
                   UNKNOWN_ITEM: lambda i: f"item_id {ids[i]} is not in the catalog"}
        tables = [pa.table({"source_file": pa.array([sources[files[i]] for i in idx], pa.string()),
                            "row": pa.array(rows[idx], pa.int64()), "column": pa.array([ITEM_ID] * len(idx)),
                            "reason": pa.array([reason] * len(idx)),
                            "detail": pa.array([details[reason](i) for i in idx], pa.string())},
                           schema=REJECTS_SCHEMA) for idx, reason in rejected if len(idx)]
        result["rejects"] = pa.concat_tables(tables) if tables else result["rejects"]
        emb = emb.filter(pa.array(~dup & known))
    if cat is None:
        return result
    cat = cat.sort_by(ITEM_ID)
    cat_ids = cat.column(ITEM_ID).to_numpy()
    values = np.zeros((len(cat_ids), dim), np.float32)
    present = np.zeros(len(cat_ids), bool)
    if emb is not None and emb.num_rows:
        at = np.searchsorted(cat_ids, emb.column(ITEM_ID).to_numpy())
        flat = emb.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        values[at] = flat.reshape(-1, dim)
        present[at] = True
    joined = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dim, mask=pa.array(~present))
    table = cat.append_column(pa.field(column, embedding_type(dim)), joined)
    write_table(table, out.child(f"part-{partition:05d}.parquet"))
    return {**result, "joined": int(present.sum()), "missing": int((~present).sum()), "catalog_rows": len(cat_ids)}

