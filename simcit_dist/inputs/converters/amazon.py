"""Amazon review datasets in the TIGER / LETTER layout -> catalog, interactions, pairs.

Inputs (see ``../shared/data/amazon_*/README.md``):

- ``*.inter.json``: ``{"<user_id>": [item_id, ...]}``, each list in time order. There are no
  timestamps, so ``timestamp`` is the 0-based position in the user's list (order-preserving,
  which is all a sequential recommender uses). ``row`` in rejects is the interaction's position
  in the file (users in file order, then list order).
- ``*.item.json`` (Scientific): ``{"<item_id>": {"title", "description", "brand",
  "categories"}}``. The text fields become string columns and, through the frozen encoder
  (:mod:`.text_embed`, a Ray Data job), the ``emb_text`` modality. Without it (Beauty) the
  catalog is the set of interacted items.

Behaviour views (:mod:`.behaviour`, training part only): co-occurrence pairs and, when
``behaviour.cf_dim > 0``, an ``emb_cf`` modality (null for items without training
co-occurrence). Item and user ids are kept as published (0-based integers).

These files are a few MB: JSON is parsed in the driver; the expensive step (the encoder) is
the distributed one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from simcit_dist.data.parquet_io import write_table
from simcit_dist.data.rejects import BAD_ID, RejectBuffer
from simcit_dist.data.run_output import RunReport, write_rejects
from simcit_dist.data.schemas import ITEM_ID, SchemaError, embedding_type
from simcit_dist.inputs.config import AmazonConfig
from simcit_dist.inputs.converters.behaviour import Interactions, behaviour_views, min_count_filter
from simcit_dist.inputs.converters.text_embed import embed_texts
from simcit_dist.storage import Location, StorageConfig, read_json, resolve

log = logging.getLogger(__name__)


def _as_int(value: Any) -> int | None:
    """An integer id from JSON (an int, or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _read_object(loc: Location) -> dict[str, Any]:
    data = read_json(loc)
    if not isinstance(data, dict):
        raise SchemaError(f"{loc.uri}: expected a JSON object keyed by id, got {type(data).__name__}")
    return data


def parse_interactions(loc: Location) -> tuple[Interactions, RejectBuffer, int]:
    """(interactions, rejects, rows read) from ``{"user": [items in time order]}``."""
    rejects = RejectBuffer(loc.uri)
    users, items, times = [], [], []
    row = 0
    for key, seq in _read_object(loc).items():
        if not isinstance(seq, list):
            raise SchemaError(f"{loc.uri}: user {key!r} maps to {type(seq).__name__}, expected a list of item ids")
        user = _as_int(key)
        if user is None:
            rejects.add(range(row, row + len(seq)), BAD_ID, "user_id", f"user key {key!r} is not an integer")
            row += len(seq)
            continue
        for pos, item in enumerate(seq):
            value = _as_int(item)
            if value is None:
                rejects.add([row], BAD_ID, ITEM_ID, f"item {item!r} of user {key} is not an integer")
            else:
                users.append(user)
                items.append(value)
                times.append(pos)
            row += 1
    return Interactions.sorted(np.array(users, np.int64), np.array(items, np.int64), np.array(times, np.int64)), \
        rejects, row


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def parse_items(loc: Location, fields: list[str]) -> tuple[pa.Table, RejectBuffer]:
    """Item ids and text columns (``fields``) from ``{"<item_id>": {field: text}}``."""
    rejects = RejectBuffer(loc.uri)
    ids: list[int] = []
    cols: dict[str, list[str | None]] = {f: [] for f in fields}
    for row, (key, record) in enumerate(_read_object(loc).items()):
        item = _as_int(key)
        if item is None:
            rejects.add([row], BAD_ID, ITEM_ID, f"item key {key!r} is not an integer")
            continue
        record = record if isinstance(record, dict) else {}
        ids.append(item)
        for f in fields:
            cols[f].append(_text(record.get(f)))
    table = pa.table({ITEM_ID: pa.array(ids, pa.int64())} | {f: pa.array(v, pa.string()) for f, v in cols.items()})
    return table.sort_by(ITEM_ID), rejects


def convert_amazon(cfg: AmazonConfig, storage: StorageConfig | None, staged: Location, report: RunReport) -> None:
    inter_loc = resolve(cfg.inter_json, storage)
    inter, inter_rejects, rows = parse_interactions(inter_loc)
    write_rejects(staged, "interactions", inter_rejects)
    interactions = report.table("interactions")
    interactions.input_rows, interactions.files = rows, 1
    interactions.add_rejects(inter_rejects.counts)

    if cfg.item_json:
        item_loc = resolve(cfg.item_json, storage)
        items, item_rejects = parse_items(item_loc, cfg.text.fields)
        write_rejects(staged, "items", item_rejects)
        report.table("catalog").add_rejects(item_rejects.counts)
        report.table("catalog").input_rows = items.num_rows + len(item_rejects)
    else:
        items = pa.table({ITEM_ID: np.unique(inter.item_id)})
        report.table("catalog").input_rows = items.num_rows
    report.table("catalog").files = 1
    items, inter = _restrict(items, inter, cfg, report)

    pairs, emb_cf, has_cf, notes = behaviour_views(inter, items[ITEM_ID].to_numpy(), cfg.behaviour)
    interactions.notes.update(notes)
    if emb_cf is not None:
        column = pa.FixedSizeListArray.from_arrays(pa.array(emb_cf.reshape(-1)), cfg.behaviour.cf_dim,
                                                   mask=pa.array(~has_cf))
        items = items.append_column(pa.field("emb_cf", embedding_type(cfg.behaviour.cf_dim)), column)
        report.table("catalog").missing_modality["emb_cf"] = int((~has_cf).sum())
    if cfg.item_json:
        embed_texts(items, cfg.text, staged.child("catalog"))
    else:
        write_table(items, staged.child("catalog", "part-00000.parquet"))
    write_table(inter.table(), staged.child("interactions", "part-00000.parquet"))
    write_table(pairs, staged.child("pairs", "part-00000.parquet"))
    report.table("catalog").output_rows = items.num_rows
    interactions.output_rows = len(inter)
    report.table("pairs").output_rows = pairs.num_rows
    report.table("pairs").notes["derived_from"] = f"training interactions, window {cfg.behaviour.window}"
    log.info("amazon: %d items, %d interactions, %d pairs", items.num_rows, len(inter), pairs.num_rows)


def _restrict(items: pa.Table, inter: Interactions, cfg: AmazonConfig, report: RunReport
              ) -> tuple[pa.Table, Interactions]:
    """Apply ``max_items`` (smoke subset) and the minimum-count filters; counts go to the notes."""
    notes = report.table("interactions").notes
    if cfg.max_items is not None and items.num_rows > cfg.max_items:
        items = items.slice(0, cfg.max_items)
        keep = np.isin(inter.item_id, items[ITEM_ID].to_numpy())
        notes["outside_max_items"] = int((~keep).sum())
        report.table("catalog").notes["outside_max_items"] = int(report.table("catalog").input_rows - items.num_rows)
        inter = inter.select(keep)
    b = cfg.behaviour
    if b.min_item_interactions or b.min_user_interactions:
        keep = min_count_filter(inter, b.min_item_interactions, b.min_user_interactions)
        notes["filtered_min_count"] = int((~keep).sum())
        inter = inter.select(keep)
        kept_items = np.isin(items[ITEM_ID].to_numpy(), inter.item_id)
        report.table("catalog").notes["filtered_min_count"] = int((~kept_items).sum())
        items = items.filter(pa.array(kept_items))
    return items, inter

