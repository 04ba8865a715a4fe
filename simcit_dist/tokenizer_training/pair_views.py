"""The pair view of tokenizer training at scale: every catalog item with one co-occurring partner
per row, built by two rounds of the storage exchange (:func:`build_pair_views`).

Its Ray tasks run in pooled workers that import this module first, so it imports neither torch
nor the tokenizer (that import alone cost each worker 1.5-3 s of CPU and its memory).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from simcit_dist.data.exchange import ExchangeSink, read_partition, write_partitions
from simcit_dist.data.id_lookup import find_sorted
from simcit_dist.data.id_sample import anchor_mask
from simcit_dist.data.parquet_io import count_rows, read_dataset, write_table
from simcit_dist.data.schemas import ITEM_ID, PARTNER_ID, PARTNER_PREFIX
from simcit_dist.storage import (
    Location,
    delete_dir,
    exists,
    read_text,
    replace_dir,
    staging_sibling,
    total_bytes,
    write_json,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairViewBuild:
    rows: int  # rows of the pair view
    shuffled_bytes: int  # exchange files written by both rounds (0: an earlier build was reused)
    catalog_rows_shuffled: int  # catalog rows that went through round 1 (0: reused)


def build_pair_views(catalog: Location, pairs: Location, modalities: Sequence[str], output: Location,
                     num_partitions: int, anchor_fraction: float = 1.0) -> PairViewBuild:
    """Write every catalog item with one co-occurring partner per row (an item with p pairs appears
    p times; an item without pairs once, with a null partner). Pairs count in both directions.
    With ``anchor_fraction`` < 1 only that fraction of the items (by id hash) get rows; their
    partners still come from the whole catalog.

    Two rounds of the storage-backed hash exchange (``simcit_dist.data.exchange``): round 1 puts
    catalog rows (by ``item_id``) and links (by partner id) in the same partitions and attaches the
    partner's embeddings; round 2 brings those rows to their anchor's partition (the catalog is
    already partitioned by ``item_id``) and attaches the anchor's. Memory per task ~ (catalog +
    links) / ``num_partitions``. Storage: the catalog rows of round 1 once more as scratch, plus
    ~ rows x (1 + 2) embedding bytes (partner-attached links, then the output), rows ~
    anchor_fraction x (catalog items + 2 x pairs); the scratch is deleted at the end.

    A sample shuffles only the catalog rows it needs: the sampled anchors (an id hash, known to
    every reader) and their partners. The partner ids are collected first from the pairs (8 bytes
    per sampled link, in the driver and shared read-only with every catalog reader through the
    object store) and the catalog is filtered as it is read, so a 5 % view moves ~5 % of the
    embedding bytes instead of the whole catalog.
    """
    if exists(output.child("_SUCCESS")):
        built = _built_fraction(output)
        if built != anchor_fraction:
            raise ValueError(
                f"pair views at {output.uri} were built with anchor_fraction {built}, this run asks for "
                f"{anchor_fraction}: delete them, or set data.pair_views to another location")
        log.info("pair views already built at %s", output.uri)
        return PairViewBuild(count_rows(output), 0, 0)
    staged = staging_sibling(output)
    scratch = staged.child("_exchange")
    try:
        cat_cols = [ITEM_ID, *modalities]
        cat = read_dataset(catalog, columns=cat_cols)
        if anchor_fraction < 1:
            partners = ray.put(_sampled_partner_ids(pairs, anchor_fraction))
            cat = cat.map_batches(partial(_needed_rows, partners=partners, anchor_fraction=anchor_fraction),
                                  batch_format="pyarrow")
        cat_sink = ExchangeSink(scratch.child("one"), [ITEM_ID], num_partitions, "cat")
        cat.write_datasink(cat_sink)
        read_dataset(pairs, columns=["item_a", "item_b"]).map_batches(
            partial(_links, anchor_fraction=anchor_fraction), batch_format="pyarrow").write_datasink(
            ExchangeSink(scratch.child("one"), [PARTNER_ID], num_partitions, "links"))
        ray.get([_attach_partner.remote(scratch, p, list(modalities), num_partitions) for p in range(num_partitions)])
        rows = sum(ray.get([_attach_anchor.remote(scratch, staged, p, list(modalities), anchor_fraction)
                            for p in range(num_partitions)]))
        shuffled = total_bytes(scratch)
        delete_dir(scratch)
        write_json(staged.child("_SUCCESS"), {"anchor_fraction": anchor_fraction, "rows": rows,
                                              "shuffled_bytes": shuffled,
                                              "catalog_rows_shuffled": cat_sink.rows_written})
        replace_dir(staged, output)
    except BaseException:
        delete_dir(staged)
        raise
    log.info("pair views: %d rows written to %s (%d catalog rows and %.1f MB shuffled)", rows, output.uri,
             cat_sink.rows_written, shuffled / 1e6)
    return PairViewBuild(rows, shuffled, cat_sink.rows_written)


def _sampled_partner_ids(pairs: Location, anchor_fraction: float) -> np.ndarray:
    """Sorted unique ids of every partner of a sampled anchor (int64)."""
    ids = read_dataset(pairs, columns=["item_a", "item_b"]).map_batches(
        partial(_partner_ids, anchor_fraction=anchor_fraction), batch_format="pyarrow")
    parts = [np.asarray(b[PARTNER_ID]) for b in ids.iter_batches(batch_format="numpy", batch_size=None)]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def _partner_ids(batch: pa.Table, anchor_fraction: float) -> pa.Table:
    ids = np.unique(_links(batch, anchor_fraction).column(PARTNER_ID).to_numpy())
    return pa.table({PARTNER_ID: ids})


def _needed_rows(batch: pa.Table, partners: ray.ObjectRef, anchor_fraction: float) -> pa.Table:
    """The catalog rows a sampled view reads: sampled anchors and partners of sampled anchors."""
    wanted = ray.get(partners)  # read-only and zero-copy from the node's object store
    ids = batch.column(ITEM_ID).to_numpy()
    is_partner = find_sorted(wanted, ids)[1]
    return batch.filter(pa.array(is_partner | anchor_mask(ids, anchor_fraction)))


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
    return find_sorted(table.column(key).to_numpy(), ids)


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
