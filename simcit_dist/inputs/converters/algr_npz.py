"""AL-GR npz files -> catalog (``item_id``, ``emb``, ``item_key``) and, for the contrastive file, pairs.

- ``contrastive_data_mask.npz``: ``itemEncID`` (dict item id -> row of ``embeds``), ``pairs``
  (N x 2 row indices of co-occurring items), ``embeds`` (rows x 512 float32).
- ``reconstruct_data_mask.npz``: ``ids`` (row i's item id), ``embeds``.

Either file may carry ``ids`` (row -> id, a numeric or fixed-width string array): it is
streamed. ``itemEncID`` is a pickled dict and must be loaded whole (``allow_pickle``); at 250M
items that is tens of GB of Python objects in one Ray task, so re-saving the ids as an ``ids``
array (``np.array(keys)[np.argsort(rows)]``) is the scalable alternative.

Both are turned into one *row index*: ``row_ids`` (int64 per embeds row) and ``row_status``
(0 = has an id, 1 = its id was rejected, 2 = no id maps to it), 9 bytes per row (2.2 GB at
250M rows). It is put in the object store once and shared zero-copy by the pair tasks.
``embeds`` and ``pairs`` are then read in row ranges of ``rows_per_task`` by Ray tasks
(members stored uncompressed; a compressed member is read by one task, see
:mod:`simcit_dist.data.npz_stream`). Ids are base62 strings (decoded, original kept as
``item_key``) or integers (``item_key`` null). Pairs get weight 1.0 (each listed pair once).

Rejects: index entries (table ``item_index``): ``bad_id``, ``id_overflow``, ``bad_row_index``
(row out of range, or a row already mapped by an earlier entry); catalog: ``bad_id`` /
``id_overflow`` (from ``ids``), ``unmapped_row``; pairs: ``bad_row_index``, ``unknown_item``
(a row without a valid id).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from simcit_dist.data import base62
from simcit_dist.data.npz_stream import NpyMember, iter_rows, load_object_member, npz_members
from simcit_dist.data.parquet_parts import PartWriter
from simcit_dist.data.rejects import (
    BAD_ROW_INDEX,
    UNKNOWN_ITEM,
    UNMAPPED_ROW,
    RejectBuffer,
    TableSummary,
)
from simcit_dist.data.run_output import RunReport, write_rejects
from simcit_dist.data.schemas import ITEM_ID, PAIRS_SCHEMA, SchemaError, embeddings_to_arrow
from simcit_dist.data.task_gather import gather
from simcit_dist.inputs.config import AlgrConfig
from simcit_dist.inputs.converters.common import ITEM_KEY, algr_catalog_schema, reject_bad_base62, short
from simcit_dist.storage import Location

log = logging.getLogger(__name__)

HAS_ID, ID_REJECTED, NO_ID = 0, 1, 2


@dataclass
class RowIndex:
    row_ids: np.ndarray  # (rows,) int64
    row_status: np.ndarray  # (rows,) int8: HAS_ID / ID_REJECTED / NO_ID
    id_kind: str  # "base62" or "int"
    summary: TableSummary | None  # itemEncID entries (None when the index came from `ids`)
    id_rejects: dict[str, int]  # `ids` rows rejected (reason -> count); their embeds rows are catalog rejects


def convert_npz(loc: Location, cfg: AlgrConfig, staged: Location, report: RunReport, with_pairs: bool) -> None:
    members = npz_members(loc)
    embeds = _member(members, "embeds", loc)
    _check_embeds(embeds, cfg.dim)
    pairs = _member(members, "pairs", loc) if with_pairs else None
    if pairs is not None and (len(pairs.shape) != 2 or pairs.shape[1] != 2 or pairs.dtype.kind not in "iu"):
        raise SchemaError(f"{pairs.source}: expected an (N, 2) integer array of embeds rows, got {pairs.shape} "
                          f"{pairs.dtype}")
    if "ids" not in members and "itemEncID" not in members:
        raise SchemaError(f"{loc.uri}: missing member 'ids' or 'itemEncID' (item ids); members are {sorted(members)}")
    index: RowIndex = gather([_build_index.remote(loc, members, embeds.rows, cfg, staged)])[0]
    if index.summary is not None:
        report.tables["item_index"] = index.summary
    ids_ref, status_ref = ray.put(index.row_ids), ray.put(index.row_status)
    catalog = report.table("catalog")
    for part in gather(_catalog_range.remote(loc, embeds, s, e, ids_ref, status_ref, index.id_kind, cfg, staged)
                        for s, e in _ranges(embeds, cfg.rows_per_task)):
        catalog.merge(part)
    catalog.files, catalog.notes["id_kind"] = 1, index.id_kind
    catalog.add_rejects(index.id_rejects)
    if pairs is not None:
        table = report.table("pairs")
        for part in gather(_pairs_range.remote(loc, pairs, s, e, ids_ref, status_ref, cfg, staged)
                            for s, e in _ranges(pairs, cfg.rows_per_task)):
            table.merge(part)
        table.files = 1


def _member(members: dict[str, NpyMember], name: str, loc: Location) -> NpyMember:
    if name not in members:
        raise SchemaError(f"{loc.uri}: missing member {name!r}; members are {sorted(members)}")
    return members[name]


def _check_embeds(embeds: NpyMember, dim: int) -> None:
    if len(embeds.shape) != 2 or embeds.dtype.kind != "f":
        raise SchemaError(f"{embeds.source}: expected a 2-D float array (rows x {dim}), got {embeds.shape} "
                          f"{embeds.dtype}")
    if embeds.shape[1] != dim:
        raise SchemaError(f"{embeds.source}: has dim {embeds.shape[1]}, expected {dim} (algr.dim)")


def _ranges(member: NpyMember, rows_per_task: int) -> list[tuple[int, int]]:
    if member.compressed:  # inflating to a row costs reading everything before it: one task
        return [(0, member.rows)]
    return [(s, min(s + rows_per_task, member.rows)) for s in range(0, max(member.rows, 1), rows_per_task)]


# --- the row index -------------------------------------------------------------------------------------


@ray.remote
def _build_index(loc: Location, members: dict[str, NpyMember], rows: int, cfg: AlgrConfig,
                 staged: Location) -> RowIndex:
    if "ids" in members:
        return _index_from_ids(loc, members["ids"], rows, cfg, staged)
    return _index_from_dict(loc, members["itemEncID"], rows, cfg, staged)


def _index_from_ids(loc: Location, member: NpyMember, rows: int, cfg: AlgrConfig, staged: Location) -> RowIndex:
    if member.rows != rows or len(member.shape) != 1:
        raise SchemaError(f"{member.source}: expected a 1-D array with one id per embeds row ({rows}), got "
                          f"shape {member.shape}")
    rejects = RejectBuffer(member.source)
    row_ids = np.zeros(rows, dtype=np.int64)
    status = np.zeros(rows, dtype=np.int8)
    chunks = ([(0, load_object_member(loc, member, cfg.allow_pickle))] if member.dtype.hasobject
              else iter_rows(loc, member, chunk_rows=cfg.chunk_rows))
    kind = "int"
    for first, chunk in chunks:
        values, st, kind = _decode_ids(list(chunk) if member.dtype.hasobject else chunk, cfg)
        rows_here = np.arange(first, first + len(values))
        reject_bad_base62(rejects, rows_here, st, [str(x) for x in chunk], "ids", cfg.base62_alphabet)
        row_ids[rows_here] = values
        status[rows_here] = np.where(st == base62.OK, HAS_ID, ID_REJECTED)
    write_rejects(staged, "ids", rejects)
    return RowIndex(row_ids, status, kind, None, rejects.counts)


def _decode_ids(chunk: Any, cfg: AlgrConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """Ids of any supported kind -> (int64 values, base62 status codes, "base62" | "int")."""
    arr = np.asarray(chunk)
    if arr.dtype.kind in "iu":
        too_big = arr > base62.INT64_MAX if arr.dtype.kind == "u" else np.zeros(arr.shape, bool)
        values = np.where(too_big, 0, arr).astype(np.int64)
        return values, np.where(too_big, base62.OVERFLOW, base62.OK).astype(np.uint8), "int"
    if arr.dtype.kind in "US":
        values, st = base62.decode_array(pa.array(arr), cfg.base62_alphabet)
        return values, st, "base62"
    if all(isinstance(x, (str, bytes)) for x in chunk):
        values, st = base62.decode_array(pa.array(list(chunk)), cfg.base62_alphabet)
        return values, st, "base62"
    values = np.zeros(len(chunk), dtype=np.int64)
    st = np.full(len(chunk), base62.BAD, dtype=np.uint8)
    for i, x in enumerate(chunk):
        if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
            st[i] = base62.OK if -(2 ** 63) <= int(x) <= base62.INT64_MAX else base62.OVERFLOW
            values[i] = int(x) if st[i] == base62.OK else 0
    return values, st, "int"


def _index_from_dict(loc: Location, member: NpyMember, rows: int, cfg: AlgrConfig, staged: Location) -> RowIndex:
    mapping = load_object_member(loc, member, cfg.allow_pickle)
    if not isinstance(mapping, dict):
        raise SchemaError(f"{member.source}: expected a dict item id -> embeds row, got {type(mapping).__name__}")
    keys = list(mapping)
    values, st, kind = _decode_ids(keys, cfg)
    targets = np.fromiter((int(v) for v in mapping.values()), dtype=np.int64, count=len(keys))
    del mapping
    rejects = RejectBuffer(member.source)
    entries = np.arange(len(keys))
    reject_bad_base62(rejects, entries, st, [str(k) for k in keys], "itemEncID", cfg.base62_alphabet)
    ok = st == base62.OK
    out_of_range = ok & ((targets < 0) | (targets >= rows))
    idx = np.flatnonzero(out_of_range)
    rejects.add(idx, BAD_ROW_INDEX, "itemEncID", [f"id {short(keys[i])} -> row {targets[i]}, but embeds has "
                                                  f"{rows} rows" for i in idx])
    ok &= ~out_of_range
    # The first entry (dict order) of a row keeps it; a row has one id, or pairs would be ambiguous.
    cand = np.flatnonzero(ok)
    order = cand[np.argsort(targets[cand], kind="stable")]
    first = np.ones(order.size, dtype=bool)
    first[1:] = targets[order][1:] != targets[order][:-1]
    owner = np.maximum.accumulate(np.where(first, np.arange(order.size), 0)) if order.size else order
    later = np.flatnonzero(~first)
    rejects.add(order[later], BAD_ROW_INDEX, "itemEncID",
                [f"id {short(keys[order[j]])} -> row {targets[order[j]]}, already the row of id "
                 f"{short(keys[order[owner[j]]])}" for j in later])
    kept = order[first]
    row_ids = np.zeros(rows, dtype=np.int64)
    status = np.full(rows, NO_ID, dtype=np.int8)
    row_ids[targets[kept]] = values[kept]
    status[targets[kept]] = HAS_ID
    write_rejects(staged, "item_index", rejects)
    summary = TableSummary(input_rows=len(keys), output_rows=int(kept.size), files=1)
    summary.add_rejects(rejects.counts)
    return RowIndex(row_ids, status, kind, summary, {})


# --- catalog and pairs tasks ---------------------------------------------------------------------------


@ray.remote
def _catalog_range(loc: Location, embeds: NpyMember, start: int, stop: int, row_ids: np.ndarray,
                   status: np.ndarray, id_kind: str, cfg: AlgrConfig, staged: Location) -> TableSummary:
    rejects = RejectBuffer(embeds.source)
    summary = TableSummary(input_rows=stop - start)
    with PartWriter(staged.child("catalog", f"part-{start:012d}.parquet"), algr_catalog_schema(cfg.dim)) as out:
        for first, chunk in iter_rows(loc, embeds, start, stop, cfg.chunk_rows):
            rows = np.arange(first, first + len(chunk))
            st = status[rows]
            missing = rows[st == NO_ID]
            rejects.add(missing, UNMAPPED_ROW, "embeds", "no item id maps to this embeds row")
            keep = st == HAS_ID
            ids = row_ids[rows[keep]]
            keys = base62.encode_array(ids, cfg.base62_alphabet) if id_kind == "base62" else pa.nulls(len(ids),
                                                                                                     pa.string())
            out.write(pa.table({ITEM_ID: pa.array(ids, pa.int64()),
                                "emb": embeddings_to_arrow(chunk[keep].astype(np.float32, copy=False)),
                                ITEM_KEY: keys}))
        summary.output_rows = out.rows
    summary.add_rejects(rejects.counts)
    write_rejects(staged, f"catalog-{start:012d}", rejects)
    return summary


@ray.remote
def _pairs_range(loc: Location, pairs: NpyMember, start: int, stop: int, row_ids: np.ndarray,
                 status: np.ndarray, cfg: AlgrConfig, staged: Location) -> TableSummary:
    rejects = RejectBuffer(pairs.source)
    summary = TableSummary(input_rows=stop - start)
    n_rows = len(row_ids)
    with PartWriter(staged.child("pairs", f"part-{start:012d}.parquet"), PAIRS_SCHEMA) as out:
        for first, chunk in iter_rows(loc, pairs, start, stop, cfg.chunk_rows):
            rows = np.arange(first, first + len(chunk))
            a, b = chunk[:, 0].astype(np.int64), chunk[:, 1].astype(np.int64)
            bad = (a < 0) | (a >= n_rows) | (b < 0) | (b >= n_rows)
            idx = np.flatnonzero(bad)
            rejects.add(rows[idx], BAD_ROW_INDEX, "pairs",
                        [f"rows ({a[i]}, {b[i]}) outside embeds rows [0, {n_rows})" for i in idx])
            a_ok = np.where(bad, 0, a)
            b_ok = np.where(bad, 0, b)
            unknown = ~bad & ((status[a_ok] != HAS_ID) | (status[b_ok] != HAS_ID))
            idx = np.flatnonzero(unknown)
            rejects.add(rows[idx], UNKNOWN_ITEM, "pairs",
                        [f"embeds row {a[i] if status[a[i]] != HAS_ID else b[i]} has no valid item id" for i in idx])
            keep = ~bad & ~unknown
            out.write(pa.table({"item_a": row_ids[a[keep]], "item_b": row_ids[b[keep]],
                                "weight": np.ones(int(keep.sum()), dtype=np.float32)}))
        summary.output_rows = out.rows
    summary.add_rejects(rejects.counts)
    write_rejects(staged, f"pairs-{start:012d}", rejects)
    return summary

