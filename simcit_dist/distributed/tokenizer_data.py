"""Ray Data inputs of tokenizer training: catalog rows (optionally with a co-occurring partner),
a deterministic held-back sample, and the collate function that turns Arrow batches into tensors.

The pair view at scale is its own Ray Data job (:func:`build_pair_views`): two hash joins
(``left_outer``) shuffle the catalog twice and the (symmetrised) pairs twice, so its cost is
about 2 x (catalog bytes + pairs bytes) of shuffle traffic once per run; the result is
written as Parquet and every epoch just streams it. No process ever holds the catalog.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
import torch
from ray.data.collate_fn import ArrowBatchCollateFn

from simcit_dist.data.exchange import ExchangeSink, read_partition, write_partitions
from simcit_dist.data.parquet_io import parquet_files, read_dataset, read_schema, write_table
from simcit_dist.data.schemas import ITEM_ID, arrow_to_embeddings, check_catalog_schema, embedding_columns
from simcit_dist.storage import (
    Location,
    delete_dir,
    exists,
    read_text,
    replace_dir,
    staging_sibling,
    write_json,
)

log = logging.getLogger(__name__)

PARTNER_ID = "partner_item_id"
PARTNER_PREFIX = "partner:"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive ids evenly


_ANCHOR_SALT = 0x5BD1E995  # makes the pair-view sample independent of the held-back split


def id_fraction_mask(item_ids: np.ndarray, fraction: float, salt: int = 0) -> np.ndarray:
    """True for about ``fraction`` of the ids, chosen by a hash of the id (and ``salt``) alone."""
    if fraction <= 0:
        return np.zeros(len(item_ids), dtype=bool)
    with np.errstate(over="ignore"):
        h = ((item_ids.astype(np.uint64) ^ np.uint64(salt)) * _GOLDEN) >> np.uint64(40)
    return (h % np.uint64(1_000_000)) < np.uint64(round(fraction * 1_000_000))


def holdout_mask(item_ids: np.ndarray, fraction: float) -> np.ndarray:
    """True for items held back from training. Depends only on the id, so every worker, epoch
    and job (training, benchmarks) agrees on the split without any shared state."""
    return id_fraction_mask(item_ids, fraction)


def anchor_mask(item_ids: np.ndarray, fraction: float) -> np.ndarray:
    """True for the items the pair view is built for (all of them at ``fraction`` 1)."""
    return id_fraction_mask(item_ids, fraction, _ANCHOR_SALT)


def resolve_modalities(catalog: Location, wanted: Sequence[str]) -> dict[str, int]:
    """Modality columns and dims, checked against the catalog's schema (fails before training)."""
    schema = read_schema(catalog)
    if not wanted:
        found = embedding_columns(schema)
        if not found:
            raise ValueError(f"{catalog.uri}: no fixed_size_list<float32> embedding columns in {schema.names}")
        return dict(sorted(found.items()))
    return check_catalog_schema(schema, dict.fromkeys(wanted), catalog.uri)


def build_pair_views(catalog: Location, pairs: Location, modalities: Sequence[str], output: Location,
                     num_partitions: int, anchor_fraction: float = 1.0) -> int:
    """Write every catalog item with one co-occurring partner per row (an item with p pairs appears
    p times; an item without pairs once, with a null partner). Pairs count in both directions.
    With ``anchor_fraction`` < 1 only that fraction of the items (by id hash) get rows; their
    partners still come from the whole catalog.

    Two rounds of the storage-backed hash exchange (``simcit_dist.data.exchange``): round 1 puts
    catalog rows (by ``item_id``) and links (by partner id) in the same partitions and attaches the
    partner's embeddings; round 2 brings those rows to their anchor's partition (the catalog is
    already partitioned by ``item_id``) and attaches the anchor's. Memory per task ~ (catalog +
    links) / ``num_partitions``. Storage: the catalog once more as scratch, plus ~ rows x (1 + 2)
    embedding bytes (partner-attached links, then the output), rows ~ anchor_fraction x (catalog
    items + 2 x pairs); the scratch is deleted at the end.
    """
    if exists(output.child("_SUCCESS")):
        built = _built_fraction(output)
        if built != anchor_fraction:
            raise ValueError(
                f"pair views at {output.uri} were built with anchor_fraction {built}, this run asks for "
                f"{anchor_fraction}: delete them, or set data.pair_views to another location")
        log.info("pair views already built at %s", output.uri)
        return count_rows(output)
    staged = staging_sibling(output)
    scratch = staged.child("_exchange")
    try:
        cat_cols = [ITEM_ID, *modalities]
        read_dataset(catalog, columns=cat_cols).write_datasink(
            ExchangeSink(scratch.child("one"), [ITEM_ID], num_partitions, "cat"))
        read_dataset(pairs, columns=["item_a", "item_b"]).map_batches(
            partial(_links, anchor_fraction=anchor_fraction), batch_format="pyarrow").write_datasink(
            ExchangeSink(scratch.child("one"), [PARTNER_ID], num_partitions, "links"))
        ray.get([_attach_partner.remote(scratch, p, list(modalities), num_partitions) for p in range(num_partitions)])
        rows = sum(ray.get([_attach_anchor.remote(scratch, staged, p, list(modalities), anchor_fraction)
                            for p in range(num_partitions)]))
        delete_dir(scratch)
        write_json(staged.child("_SUCCESS"), {"anchor_fraction": anchor_fraction, "rows": rows})
        replace_dir(staged, output)
    except BaseException:
        delete_dir(staged)
        raise
    log.info("pair views: %d rows written to %s", rows, output.uri)
    return rows


def _built_fraction(output: Location) -> float:
    """The anchor fraction recorded in ``_SUCCESS`` (views written before it was recorded: 1)."""
    text = read_text(output.child("_SUCCESS"))
    return float(json.loads(text).get("anchor_fraction", 1.0)) if text.strip() else 1.0


def _links(batch: pa.Table, anchor_fraction: float = 1.0) -> pa.Table:
    """(item_id, partner_item_id) in both directions, self-pairs dropped, anchors sampled."""
    a, b = batch.column("item_a"), batch.column("item_b")
    links = pa.table({ITEM_ID: pa.concat_arrays([_chunk(a), _chunk(b)]),
                      PARTNER_ID: pa.concat_arrays([_chunk(b), _chunk(a)])})
    keep = pc.not_equal(links.column(ITEM_ID), links.column(PARTNER_ID))
    if anchor_fraction < 1:
        keep = pc.and_(keep, pa.array(anchor_mask(links.column(ITEM_ID).to_numpy(), anchor_fraction)))
    return links.filter(keep)


def _chunk(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return arr.cast(pa.int64())


def _take_by_id(table: pa.Table, key: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row of each id in ``table`` sorted by ``key``, found mask)."""
    keys = table.column(key).to_numpy()
    pos = np.minimum(np.searchsorted(keys, ids), max(len(keys) - 1, 0))
    found = (keys[pos] == ids) if len(keys) else np.zeros(len(ids), bool)
    return pos, found


@ray.remote
def _attach_partner(scratch: Location, partition: int, modalities: list[str], num_partitions: int) -> None:
    links = read_partition(scratch.child("one"), partition, "links")
    cat = read_partition(scratch.child("one"), partition, "cat")
    if links is None or cat is None:
        return
    cat = cat.sort_by(ITEM_ID)
    pos, found = _take_by_id(cat, ITEM_ID, links.column(PARTNER_ID).to_numpy())
    links = links.filter(pa.array(found))
    take = pa.array(pos[found])
    partner = {PARTNER_PREFIX + m: cat.column(m).take(take) for m in modalities}
    rows = pa.table({ITEM_ID: links.column(ITEM_ID), PARTNER_ID: links.column(PARTNER_ID), **partner})
    write_partitions(rows, scratch.child("two"), [ITEM_ID], num_partitions, f"p{partition:05d}")


@ray.remote
def _attach_anchor(scratch: Location, out: Location, partition: int, modalities: list[str],
                   anchor_fraction: float) -> int:
    cat = read_partition(scratch.child("one"), partition, "cat")
    if cat is None:
        return 0
    if anchor_fraction < 1:  # only sampled items are anchors (their links were sampled the same way)
        cat = cat.filter(pa.array(anchor_mask(cat.column(ITEM_ID).to_numpy(), anchor_fraction)))
    cat = cat.sort_by(ITEM_ID)
    views = read_partition(scratch.child("two"), partition)
    n_cat = cat.num_rows
    if views is not None:
        views = views.sort_by([(ITEM_ID, "ascending"), (PARTNER_ID, "ascending")])
        pos, found = _take_by_id(cat, ITEM_ID, views.column(ITEM_ID).to_numpy())
        views = views.filter(pa.array(found))
        pos = pos[found]
    else:
        pos = np.zeros(0, np.int64)
    lonely = np.setdiff1d(np.arange(n_cat), pos)  # items without any pair: one row, no partner
    anchor = np.concatenate([pos, lonely])
    columns: dict[str, Any] = {ITEM_ID: cat.column(ITEM_ID).take(pa.array(anchor))}
    for m in modalities:
        columns[m] = cat.column(m).take(pa.array(anchor))
    columns[PARTNER_ID] = pa.concat_arrays([
        _chunk(views.column(PARTNER_ID)) if views is not None else pa.array([], pa.int64()),
        pa.nulls(len(lonely), pa.int64())])
    for m in modalities:
        typ = cat.schema.field(m).type
        paired = _chunk_any(views.column(PARTNER_PREFIX + m)) if views is not None else pa.array([], typ)
        columns[PARTNER_PREFIX + m] = pa.concat_arrays([paired, pa.nulls(len(lonely), typ)])
    table = pa.table(columns)
    write_table(table, out.child(f"part-{partition:05d}.parquet"))
    return table.num_rows


def _chunk_any(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _parquet_rows(f: Location) -> int:
    import pyarrow.parquet as pq

    with f.fs.open_input_file(f.path) as handle:
        return int(pq.ParquetFile(handle).metadata.num_rows)


def count_rows(source: Location) -> int:
    """Row count from Parquet footers only (no data read)."""
    return sum(_parquet_rows(f) for f in parquet_files(source))


def _split_filter(batch: pa.Table, fraction: float, keep_holdout: bool) -> pa.Table:
    held = holdout_mask(batch.column(ITEM_ID).to_numpy(zero_copy_only=False), fraction)
    if keep_holdout:
        return batch.filter(pa.array(held))
    if PARTNER_ID in batch.column_names:  # a held-back item must not reach training as a partner either
        partner = _ids(batch.column(PARTNER_ID), missing=-1)
        held |= (partner >= 0) & holdout_mask(partner, fraction)
    return batch.filter(pa.array(~held))


def training_dataset(source: Location, columns: Sequence[str], holdout_fraction: float, shuffle_files: bool,
                     seed: int) -> ray.data.Dataset:
    """Streaming training rows (held-back items removed); file order reshuffled every epoch."""
    ds = read_dataset(source, columns=list(columns), shuffle_files=shuffle_files, seed=seed)
    if holdout_fraction > 0:
        ds = ds.map_batches(partial(_split_filter, fraction=holdout_fraction, keep_holdout=False),
                            batch_format="pyarrow", zero_copy_batch=True)
    return ds


def holdout_dataset(catalog: Location, columns: Sequence[str], holdout_fraction: float,
                    max_items: int) -> ray.data.Dataset:
    """The held-back items (for SID metrics at the end of training), at most ``max_items``."""
    ds = read_dataset(catalog, columns=list(columns))
    ds = ds.map_batches(partial(_split_filter, fraction=holdout_fraction, keep_holdout=True),
                        batch_format="pyarrow", zero_copy_batch=True).limit(max_items)
    # Read whole by rank 0 inside its train worker: a progress bar there is drawn by the driver
    # beside the job's own progress line, and Ray never closes it, so every later redraw repeats it.
    ds.context.enable_progress_bars = False
    return ds


class TokenizerCollate(ArrowBatchCollateFn):
    """Arrow batch -> the tokenizer's batch dict. Null embeddings (a missing modality, or no
    partner) become all-NaN rows, which the model masks out; ids stay int64."""

    def __init__(self, modalities: Sequence[str], with_partner: bool, device: str = "cpu") -> None:
        self.modalities = list(modalities)
        self.with_partner = with_partner
        self.device = device

    def __call__(self, batch: pa.Table) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return arrow_to_batch(batch, self.modalities, self.with_partner, self.device)


def arrow_to_batch(batch: pa.Table, modalities: Sequence[str], with_partner: bool,
                   device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Arrow rows -> tokenizer batch. Embeddings are zero-copy views of the Arrow buffers."""
    columns = {ITEM_ID: _ids(batch.column(ITEM_ID))}
    columns.update({m: arrow_to_embeddings(batch.column(m)) for m in modalities})
    if with_partner:
        columns[PARTNER_ID] = _ids(batch.column(PARTNER_ID), missing=-1)
        columns.update({PARTNER_PREFIX + m: arrow_to_embeddings(batch.column(PARTNER_PREFIX + m)) for m in modalities})
    with warnings.catch_warnings():  # read-only Arrow buffers: the model never writes to its inputs
        warnings.simplefilter("ignore", UserWarning)
        out = {k: torch.from_numpy(v) for k, v in columns.items()}
    return {k: v.to(device, non_blocking=True) for k, v in out.items()}


def _ids(column: pa.ChunkedArray | pa.Array, missing: int | None = None) -> np.ndarray:
    if missing is not None and column.null_count:
        column = pc.fill_null(column, missing)
    return np.ascontiguousarray(column.to_numpy(), dtype=np.int64)
