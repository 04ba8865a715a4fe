"""Per-user chronological item sequences, joined to a SID table, built with Ray Data + polars.

The interactions table is hash-partitioned by ``user_id`` (the shuffle Ray's own ``map_groups``
uses), then each partition is grouped by polars in one vectorized call: no process ever holds
all users. Output, one row per user (``<dir>/part-*.parquet``)::

    user_id int64, items list<int32> (item indices of the SID catalog, oldest first),
    length int32, num_missing int32, missing_items list<int64> (a sample of item ids without SID)

Interactions whose item has no SID are dropped *explicitly*: counted, sampled, logged, and
recorded in ``manifest.json`` beside the table (or rejected, with ``on_missing_sid: error``).
Splits are not materialized: :func:`split_bounds` derives them from the lengths when
examples are built, so one sequence table serves every split protocol.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simcit_dist.config_loader import to_dict
from simcit_dist.data.parquet_io import check_files, read_dataset, read_schema, read_table
from simcit_dist.data.schemas import INTERACTIONS_SCHEMA, check_columns
from simcit_dist.recommender.catalog import lookup_index
from simcit_dist.recommender.config import DataConfig
from simcit_dist.storage import (
    Location,
    StorageConfig,
    delete_dir,
    exists,
    read_json,
    replace_dir,
    resolve,
    staging_sibling,
    write_json,
)

log = logging.getLogger(__name__)

MISSING_SAMPLE_PER_USER = 3
MISSING_SAMPLE = 20
SEQUENCE_SCHEMA = pa.schema([
    ("user_id", pa.int64()), ("items", pa.list_(pa.int32())), ("length", pa.int32()),
    ("num_missing", pa.int32()), ("missing_items", pa.list_(pa.int64())),
])


class ItemIndex(Protocol):
    """The items a sequence table is indexed by: a SID catalog (:mod:`~simcit_dist.recommender.catalog`), or SASRec's item catalog."""

    item_ids: np.ndarray  # (N,) int64 ascending; an item's index is its position
    version: str  # what the table was built against (a SID table version, or the item set's fingerprint)

    @property
    def num_items(self) -> int: ...


class MissingSidError(ValueError):
    """Interactions refer to items that the SID table does not contain."""


@dataclass
class SequenceStats:
    interactions: int = 0
    interactions_missing_sid: int = 0
    missing_item_sample: list[int] = field(default_factory=list)
    users: int = 0
    users_kept: int = 0  # users with at least data.min_interactions items with SIDs
    examples: dict[str, int] = field(default_factory=dict)  # per split


def group_user_sequences(block: pa.Table, item_ids: np.ndarray) -> pa.Table:
    """All interactions of some users -> one row per user (SEQUENCE_SCHEMA).

    ``item_ids``: the catalog's sorted item ids (index = item index). Ties in timestamp are
    broken by item id so the order is deterministic whatever the partitioning.
    """
    import polars as pl  # only the sequence builder needs it (not model/eval workers)

    index = lookup_index(item_ids, block.column("item_id").to_numpy().astype(np.int64))
    df = pl.DataFrame(pl.from_arrow(block.select(["user_id", "item_id", "timestamp"]))).with_columns(
        pl.Series("index", index))
    missing = pl.col("index") < 0
    out = (
        df.sort(["user_id", "timestamp", "item_id"])
        .group_by("user_id", maintain_order=True)
        .agg(
            pl.col("index").filter(~missing).cast(pl.Int32).alias("items"),
            missing.sum().cast(pl.Int32).alias("num_missing"),
            pl.col("item_id").filter(missing).head(MISSING_SAMPLE_PER_USER).alias("missing_items"),
        )
        .with_columns(pl.col("items").list.len().cast(pl.Int32).alias("length"))
        .select(SEQUENCE_SCHEMA.names)
    )
    return out.to_arrow().cast(SEQUENCE_SCHEMA)


def split_bounds(lengths: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per user: training targets are positions [1, train_end), validation [train_end, valid_end),
    test [valid_end, length). Every target has at least one history item."""
    n = np.asarray(lengths, dtype=np.int64)
    if cfg.split == "leave_one_out":
        train_end, valid_end = n - 2, n - 1
    else:  # chrono: fractions of each user's own timeline
        train_end = np.floor(n * cfg.train_frac + 1e-9).astype(np.int64)
        valid_end = np.floor(n * (cfg.train_frac + cfg.valid_frac) + 1e-9).astype(np.int64)
    train_end = np.clip(train_end, 1, np.maximum(n - 2, 1))
    valid_end = np.clip(valid_end, train_end + 1, np.maximum(n - 1, train_end + 1))
    return train_end, valid_end


def target_ranges(lengths: np.ndarray, cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) target positions per user for ``split`` ('train'/'valid'/'test'); empty for skipped users."""
    n = np.asarray(lengths, dtype=np.int64)
    train_end, valid_end = split_bounds(n, cfg)
    lo, hi = {"train": (np.ones_like(n), train_end), "valid": (train_end, valid_end),
              "test": (valid_end, n)}[split]
    kept = n >= cfg.effective_min_interactions
    return lo, np.where(kept, np.maximum(hi, lo), lo)


def count_examples(lengths: np.ndarray, cfg: DataConfig, split: str) -> np.ndarray:
    lo, hi = target_ranges(lengths, cfg, split)
    return hi - lo


def _inputs_signature(interactions: str, catalog: ItemIndex, cfg: DataConfig) -> dict[str, Any]:
    # Only what changes the table: split settings are applied later, at read time.
    return {"interactions": interactions, "sid_version": catalog.version, "num_items": catalog.num_items,
            "num_partitions": cfg.num_partitions}


def build_sequences(interactions: str, catalog: ItemIndex, out: Location, cfg: DataConfig,
                    storage: StorageConfig | None = None, rebuild: bool = True) -> SequenceStats:
    """Write the per-user sequence table under ``out``; reused when its inputs are unchanged.

    ``rebuild=False`` only reuses: a table built from other inputs is an error, not overwritten.
    """
    signature = _inputs_signature(interactions, catalog, cfg)
    manifest_loc = out.child("manifest.json")
    found = read_json(manifest_loc).get("inputs") if exists(manifest_loc) else None
    if found == signature:
        log.info("reusing sequence table %s", out.uri)
        stats = sequence_stats(out, cfg)
    elif not rebuild:
        raise ValueError(f"{out.uri}: sequence table was built from {found}, not {signature}")
    else:
        _write_sequences(interactions, catalog, out, cfg, storage)
        stats = sequence_stats(out, cfg)
        write_json(manifest_loc, {"inputs": signature, "stats": asdict(stats), "data": to_dict(cfg)})
    _report_missing(stats, interactions, catalog, cfg)
    return stats


def _write_sequences(interactions: str, catalog: ItemIndex, out: Location, cfg: DataConfig,
                     storage: StorageConfig | None) -> None:
    src = resolve(interactions, storage)
    check_files(src)  # a bad file fails here by name, not inside the shuffle
    check_columns(read_schema(src), INTERACTIONS_SCHEMA, src.uri)
    ds = read_dataset(src, columns=["user_id", "item_id", "timestamp"])
    # Hash-partition by user, then one polars group-by per whole partition (batch_size=None keeps
    # partitions whole, the guarantee Ray's map_groups relies on).
    grouped = ds.repartition(cfg.num_partitions, keys=["user_id"]).map_batches(
        group_user_sequences,  # type: ignore[arg-type]  # fn_kwargs supplies item_ids
        batch_size=None, batch_format="pyarrow", fn_kwargs={"item_ids": catalog.item_ids})
    staged = staging_sibling(out)
    try:
        grouped.write_parquet(staged.path, filesystem=staged.fs)
        replace_dir(staged, out)
    except Exception:
        delete_dir(staged)
        raise
    log.info("wrote per-user sequences to %s", out.uri)


def sequence_stats(loc: Location, cfg: DataConfig) -> SequenceStats:
    """Counts from the small columns of a written sequence table."""
    table = read_table(loc, columns=["length", "num_missing", "missing_items"])
    lengths = table.column("length").to_numpy().astype(np.int64)
    missing = table.column("num_missing").to_numpy().astype(np.int64)
    sample = pc.list_flatten(table.column("missing_items")).to_numpy()[:MISSING_SAMPLE]
    examples = {split: int(count_examples(lengths, cfg, split).sum()) for split in ("train", "valid", "test")}
    return SequenceStats(
        interactions=int(lengths.sum() + missing.sum()), interactions_missing_sid=int(missing.sum()),
        missing_item_sample=[int(x) for x in sample], users=len(lengths),
        users_kept=int((lengths >= cfg.effective_min_interactions).sum()), examples=examples)


def _report_missing(stats: SequenceStats, interactions: str, catalog: ItemIndex, cfg: DataConfig) -> None:
    if not stats.interactions_missing_sid:
        return
    message = (f"{interactions}: {stats.interactions_missing_sid} of {stats.interactions} interactions refer to "
               f"items without a SID in table version {catalog.version!r} (e.g. item_id "
               f"{stats.missing_item_sample[:10]})")
    if cfg.on_missing_sid == "error":
        raise MissingSidError(message + "; set data.on_missing_sid=drop to exclude them")
    log.warning("%s; excluded from sequences (data.on_missing_sid=drop)", message)
