"""``prepare_data``: validate a catalog (+ pairs, interactions) and write the training inputs.

Output (published only if every table's reject fraction is within ``max_reject_fraction``)::

    <output>/catalog/part-<file>.parquet        item_id, modalities (fixed_size_list<float32>[d]), other columns
    <output>/pairs/part-<file>.parquet          item_a, item_b, weight (+ other columns)
    <output>/interactions/part-<file>.parquet   user_id, item_id, timestamp (+ other columns)
    <output>/rejects/*.parquet                  REJECTS_SCHEMA, one row per rejected input row
    <output>/summary.json                       counts per table and reason (also <run_dir>/prepare_summary.json)

How it scales (no process ever holds all ids):

1. *catalog scan* -- one Ray task per catalog file streams it (``iter_file_batches``), runs
   the row checks of :mod:`simcit_dist.inputs.validate`, writes that file's row rejects and the
   ``(item_id, file, row)`` of its valid rows to one scratch file, sorted by
   ``hash(item_id) % num_buckets`` with one row group per bucket (16 B per valid row).
2. *bucket dedup* -- one task per bucket reads its row group of every scratch file, keeps the
   first valid occurrence of each id by (file, row) -- a row failing a row check is rejected
   for that and does not count as an occurrence -- and writes the bucket's known ids (sorted)
   and its duplicates (grouped by catalog file).
3. *catalog write* -- one task per catalog file re-reads it, re-runs the (cheap, deterministic)
   row checks, drops its duplicates and writes the clean part + ``duplicate_item_id`` rejects.
   In parallel, *reference scan* tasks stream pairs / interactions files (row checks, then
   their item references to bucketed scratch files).
4. *reference join* -- one task per bucket looks its references up in the bucket's known ids.
5. *reference write* -- one task per pairs / interactions file drops the rows with unknown
   items (``unknown_item``) and writes the clean part.

Cost: the catalog is read twice and written once; pairs and interactions likewise; the ids
(16-20 B per row) go through storage once. Memory per bucket task is about
``(catalog items + references) / num_buckets x 24 B``: pick ``num_buckets`` ~ items / 10M.
Each scan task holds one file's ids. Scratch files live under the staging prefix and are
deleted before publishing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain

import numpy as np
import pyarrow as pa
import ray

from simcit_dist.config_loader import to_dict
from simcit_dist.data.id_lookup import find_sorted
from simcit_dist.data.parquet_io import check_files, file_schema, iter_file_batches, read_table
from simcit_dist.data.parquet_parts import PartWriter, hash_bucket, read_partition, write_partitioned
from simcit_dist.data.rejects import DUPLICATE_ITEM_ID, UNKNOWN_ITEM, RejectBuffer, TableSummary
from simcit_dist.data.run_output import RunReport, run_staged, scratch_dir, write_rejects
from simcit_dist.data.task_gather import gather
from simcit_dist.inputs.config import PrepareJobConfig
from simcit_dist.inputs.validate import (
    INTERACTION_REFS,
    PAIR_REFS,
    catalog_modalities,
    check_catalog_batch,
    check_ref_batch,
    check_ref_columns,
)
from simcit_dist.storage import Location, resolve

log = logging.getLogger(__name__)

ID_SCHEMA = pa.schema([("item_id", pa.int64()), ("file", pa.int32()), ("row", pa.int64())])
REF_SCHEMA = pa.schema([("item_id", pa.int64()), ("file", pa.int32()), ("row", pa.int64()), ("ref", pa.int8())])
DUP_SCHEMA = pa.schema([("item_id", pa.int64()), ("file", pa.int32()), ("row", pa.int64()),
                        ("kept_file", pa.int32()), ("kept_row", pa.int64())])
Parts = list[tuple[Location, int]]


def prepare_data(cfg: PrepareJobConfig) -> RunReport:
    """Validate and publish; raises RejectThresholdError / SchemaError (previous output untouched)."""
    target = resolve(cfg.output, cfg.storage)
    run_dir = resolve(cfg.run_dir, cfg.storage)
    report = RunReport(job="prepare", output=target.uri, run_dir=run_dir.uri,
                       max_reject_fraction=cfg.max_reject_fraction, config=to_dict(cfg))
    return run_staged(report, target, run_dir, lambda staged: _prepare(cfg, staged, report))


def _prepare(cfg: PrepareJobConfig, staged: Location, report: RunReport) -> None:
    # Every footer first, in parallel: a corrupt or empty file fails the job in seconds, by name.
    catalog_files = [f for f, _ in check_files(resolve(cfg.catalog, cfg.storage))]
    first = catalog_files[0]
    modalities = catalog_modalities(file_schema(first), cfg.modalities, first.uri)
    log.info("prepare: %d catalog file(s), modalities %s, %d bucket(s)", len(catalog_files), modalities,
             cfg.num_buckets)
    ref_files: list[tuple[str, Location]] = []
    for kind, uri in (("pairs", cfg.pairs), ("interactions", cfg.interactions)):
        if uri:
            ref_files += [(kind, f) for f, _ in check_files(resolve(uri, cfg.storage))]
    scratch = scratch_dir(staged)
    uris = [f.uri for f in catalog_files]

    scans = gather(_scan_catalog.remote(f, i, modalities, cfg.num_buckets, scratch, staged)
                   for i, f in enumerate(catalog_files))
    catalog = report.table("catalog")
    for summary, _ in scans:
        catalog.merge(summary)
    id_parts = _by_bucket([(scratch.child("ids", f"part-{i:06d}.parquet"), b) for i, (_, b) in enumerate(scans)])
    dedup = gather(_dedup_bucket.remote(b, id_parts[b], scratch) for b in sorted(id_parts))
    known = {b: loc for b, (loc, _) in zip(sorted(id_parts), dedup)}
    dup_parts = _by_bucket([(scratch.child("dups", f"part-{b:05d}.parquet"), files)
                            for b, (_, files) in zip(sorted(id_parts), dedup)])

    # One window for both: the reference scans overlap the catalog writes, and a failure in
    # either stops both before the staging prefix is deleted.
    writes_then_scans = gather(chain(
        (_write_catalog.remote(f, i, dup_parts.get(i, []), uris, modalities, staged)
         for i, f in enumerate(catalog_files)),
        (_scan_refs.remote(kind, f, j, cfg.num_buckets, scratch, staged) for j, (kind, f) in enumerate(ref_files))))
    for summary in writes_then_scans[:len(catalog_files)]:
        catalog.merge(summary)
    if not ref_files:
        return
    ref_results = writes_then_scans[len(catalog_files):]
    for (kind, _), (summary, _) in zip(ref_files, ref_results):
        report.table(kind).merge(summary)
    ref_parts = _by_bucket([(scratch.child("refs", f"part-{j:06d}.parquet"), b)
                            for j, (_, b) in enumerate(ref_results)])
    unknown = gather(_join_bucket.remote(b, known.get(b), ref_parts[b], scratch) for b in sorted(ref_parts))
    unknown_parts = _by_bucket([(scratch.child("unknown", f"part-{b:05d}.parquet"), files)
                                for b, files in zip(sorted(ref_parts), unknown)])
    for (kind, _), summary in zip(ref_files, gather(
            _write_refs.remote(kind, f, j, unknown_parts.get(j, []), staged) for j, (kind, f) in enumerate(ref_files))):
        report.table(kind).merge(summary)


def _batches(loc: Location) -> Iterator[tuple[int, pa.RecordBatch]]:
    """``iter_file_batches``, but an empty file still yields one empty batch (so its part is written)."""
    empty = True
    for first, batch in iter_file_batches(loc):
        empty = False
        yield first, batch
    if empty:
        yield 0, pa.RecordBatch.from_pylist([], schema=file_schema(loc))


def _by_bucket(files: Sequence[tuple[Location, Mapping[int, int]]]) -> dict[int, Parts]:
    """Invert [(scratch file, key -> row group)] into key -> [(scratch file, row group)]."""
    out: dict[int, Parts] = {}
    for loc, groups in files:
        for key, row_group in groups.items():
            out.setdefault(key, []).append((loc, row_group))
    return out


# --- catalog --------------------------------------------------------------------------------------------


@ray.remote
def _scan_catalog(loc: Location, index: int, modalities: dict[str, int], num_buckets: int, scratch: Location,
                  staged: Location) -> tuple[TableSummary, dict[int, int]]:
    catalog_modalities(file_schema(loc), modalities, loc.uri)
    rejects = RejectBuffer(loc.uri)
    summary = TableSummary(files=1)
    ids, rows = [], []
    for first, batch in _batches(loc):
        checked = check_catalog_batch(batch, first, modalities, rejects)
        summary.input_rows += batch.num_rows
        ids.append(batch.column("item_id").to_numpy(zero_copy_only=False)[checked.keep].astype(np.int64))
        rows.append(first + np.flatnonzero(checked.keep))
    summary.add_rejects(rejects.counts)
    write_rejects(staged, f"catalog-{index:06d}-rows", rejects)
    all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    table = pa.table({"item_id": all_ids, "file": np.full(len(all_ids), index, np.int32),
                      "row": np.concatenate(rows) if rows else np.zeros(0, np.int64)}, schema=ID_SCHEMA)
    buckets = write_partitioned(table, hash_bucket(all_ids, num_buckets),
                                scratch.child("ids", f"part-{index:06d}.parquet"))
    return summary, buckets


@ray.remote
def _dedup_bucket(bucket: int, parts: Parts, scratch: Location) -> tuple[Location, dict[int, int]]:
    """Keep the first occurrence of each id by (file, row); write known ids and the duplicates."""
    t = read_partition(parts, ID_SCHEMA)
    ids, files, rows = (t[c].to_numpy() for c in ("item_id", "file", "row"))
    order = np.lexsort((rows, files, ids))
    ids, files, rows = ids[order], files[order], rows[order]
    first = np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.zeros(0, bool)
    owner = np.maximum.accumulate(np.where(first, np.arange(len(ids)), 0)) if len(ids) else np.zeros(0, int)
    known = scratch.child("known", f"part-{bucket:05d}.parquet")
    with PartWriter(known, pa.schema([("item_id", pa.int64())])) as out:
        out.write(pa.table({"item_id": ids[first]}))
    dup = ~first
    dups = pa.table({"item_id": ids[dup], "file": files[dup], "row": rows[dup], "kept_file": files[owner[dup]],
                     "kept_row": rows[owner[dup]]}, schema=DUP_SCHEMA)
    return known, write_partitioned(dups, files[dup], scratch.child("dups", f"part-{bucket:05d}.parquet"))


@ray.remote
def _write_catalog(loc: Location, index: int, dup_parts: Parts, uris: list[str], modalities: dict[str, int],
                   staged: Location) -> TableSummary:
    dups = read_partition(dup_parts, DUP_SCHEMA).sort_by("row")
    dup_rows = dups["row"].to_numpy()
    rejects = RejectBuffer(loc.uri)
    rejects.add(dup_rows, DUPLICATE_ITEM_ID, "item_id",
                [f"item_id {i} already at {uris[f]} row {r} (first valid occurrence is kept)"
                 for i, f, r in zip(dups["item_id"].to_pylist(), dups["kept_file"].to_pylist(),
                                    dups["kept_row"].to_pylist())])
    summary = TableSummary()
    extra = tuple(_extra_embeddings(file_schema(loc), modalities))
    if extra:
        summary.notes["dropped_columns"] = ",".join(extra)
    writer: PartWriter | None = None
    for first, batch in _batches(loc):  # at least one batch: every input file gets its output part
        checked = check_catalog_batch(batch, first, modalities, RejectBuffer(loc.uri))  # already reported
        rows = checked.keep & ~np.isin(first + np.arange(batch.num_rows), dup_rows)
        table = checked.table(batch, rows, extra)
        writer = writer or PartWriter(staged.child("catalog", f"part-{index:06d}.parquet"), table.schema)
        writer.write(table)
        for name, present in checked.present.items():
            summary.missing_modality[name] = summary.missing_modality.get(name, 0) + int((rows & ~present).sum())
    summary.output_rows = writer.close() if writer else 0
    summary.add_rejects(rejects.counts)
    write_rejects(staged, f"catalog-{index:06d}-duplicates", rejects)
    return summary


def _extra_embeddings(schema: pa.Schema, modalities: Mapping[str, int]) -> list[str]:
    """Float-list columns that are not expected modalities: not validated, so not passed on."""
    return [f.name for f in schema if f.name not in modalities and
            (pa.types.is_fixed_size_list(f.type) or pa.types.is_list(f.type) or pa.types.is_large_list(f.type))
            and pa.types.is_floating(f.type.value_type)]


# --- pairs and interactions -----------------------------------------------------------------------------


def _ref_columns(kind: str) -> tuple[str, ...]:
    return PAIR_REFS if kind == "pairs" else INTERACTION_REFS


@ray.remote
def _scan_refs(kind: str, loc: Location, index: int, num_buckets: int, scratch: Location,
               staged: Location) -> tuple[TableSummary, dict[int, int]]:
    check_ref_columns(file_schema(loc), kind, loc.uri)
    rejects = RejectBuffer(loc.uri)
    summary = TableSummary(files=1)
    pieces: list[dict[str, np.ndarray]] = []
    for first, batch in _batches(loc):
        keep, table = check_ref_batch(batch, first, kind, rejects)
        summary.input_rows += batch.num_rows
        rows = first + np.flatnonzero(keep)
        for code, col in enumerate(_ref_columns(kind)):
            pieces.append({"item_id": table[col].to_numpy(zero_copy_only=False)[keep].astype(np.int64), "row": rows,
                           "ref": np.full(len(rows), code, np.int8)})
    summary.add_rejects(rejects.counts)
    write_rejects(staged, f"{kind}-{index:06d}-rows", rejects)
    ids = np.concatenate([p["item_id"] for p in pieces]) if pieces else np.zeros(0, np.int64)
    table = pa.table({"item_id": ids, "file": np.full(len(ids), index, np.int32),
                      "row": np.concatenate([p["row"] for p in pieces]) if pieces else np.zeros(0, np.int64),
                      "ref": np.concatenate([p["ref"] for p in pieces]) if pieces else np.zeros(0, np.int8)},
                     schema=REF_SCHEMA)
    return summary, write_partitioned(table, hash_bucket(ids, num_buckets),
                                      scratch.child("refs", f"part-{index:06d}.parquet"))


@ray.remote
def _join_bucket(bucket: int, known: Location | None, parts: Parts, scratch: Location) -> dict[int, int]:
    """References of this bucket whose item is not a known (validated, de-duplicated) catalog id."""
    refs = read_partition(parts, REF_SCHEMA)
    ids = refs["item_id"].to_numpy()
    known_ids = read_table(known)["item_id"].to_numpy() if known is not None else np.zeros(0, np.int64)
    missing = refs.filter(pa.array(~find_sorted(known_ids, ids)[1]))
    return write_partitioned(missing, missing["file"].to_numpy(), scratch.child("unknown", f"part-{bucket:05d}.parquet"))


@ray.remote
def _write_refs(kind: str, loc: Location, index: int, unknown_parts: Parts, staged: Location) -> TableSummary:
    unknown = read_partition(unknown_parts, REF_SCHEMA)
    rejects = RejectBuffer(loc.uri)
    bad_rows = _reject_unknown(unknown, _ref_columns(kind), rejects)
    summary = TableSummary()
    writer: PartWriter | None = None
    for first, batch in _batches(loc):
        keep, table = check_ref_batch(batch, first, kind, RejectBuffer(loc.uri))  # already reported
        rows = keep & ~np.isin(first + np.arange(batch.num_rows), bad_rows)
        table = table.filter(pa.array(rows))
        writer = writer or PartWriter(staged.child(kind, f"part-{index:06d}.parquet"), table.schema)
        writer.write(table)
    summary.output_rows = writer.close() if writer else 0
    summary.add_rejects(rejects.counts)
    write_rejects(staged, f"{kind}-{index:06d}-unknown", rejects)
    return summary


def _reject_unknown(unknown: pa.Table, columns: tuple[str, ...], rejects: RejectBuffer) -> np.ndarray:
    """One ``unknown_item`` reject per row (naming every unknown reference of it); returns the rows."""
    by_row: dict[int, list[tuple[int, int]]] = {}
    for row, ref, item in zip(unknown["row"].to_pylist(), unknown["ref"].to_pylist(), unknown["item_id"].to_pylist()):
        by_row.setdefault(row, []).append((ref, item))
    rows = np.array(sorted(by_row), dtype=np.int64)
    for row in rows:
        refs = sorted(by_row[int(row)])
        detail = ", ".join(f"{columns[r]}={item}" for r, item in refs) + " not in the validated catalog"
        rejects.add([row], UNKNOWN_ITEM, columns[refs[0][0]], detail)
    return rows

