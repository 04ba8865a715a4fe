"""Foursquare check-ins (STAN's ``NYC.npy`` / ``NYC_POI.npy``) -> catalog, interactions, pairs.

- ``NYC.npy``: (N, 3) ``[user_id, poi_id, minutes]``; interactions keep the published ids (they
  start at 1; ``item_id`` is any int64, so no re-indexing) and ``timestamp`` = minutes. Rows are
  ordered by (user, minutes), ties in file order.
- ``NYC_POI.npy``: (P, 3) ``[poi_id, latitude, longitude]`` (float64).

``emb_geo`` (the spatial modality, float32, ``2 + 2 x fourier_features`` wide): latitude and
longitude standardised over the valid POIs, followed by random Fourier features
``[cos(2 pi x B), sin(2 pi x B)] / sqrt(F)`` with ``B ~ N(0, fourier_scale^2)`` (seeded by
``behaviour.seed``), so nearby POIs get similar vectors at several spatial scales. The raw
``latitude`` / ``longitude`` are kept as float64 columns.

Behaviour views as for Amazon Beauty (:mod:`.behaviour`), by default with the chronological
split (each user's first 80% of check-ins are training). The minimum-count filters of the
SimCIT protocol (items, then users, with < 10 check-ins) are config options; POIs they drop
leave the catalog too, and the counts are in the summary notes.

Rejects (``row`` = array row): POIs with a non-integer id (``bad_id``), NaN/Inf coordinates
(``non_finite``), or coordinates outside [-90, 90] x [-180, 180] (``bad_coordinate``);
check-ins with a non-integer user/POI id (``bad_id``) or time (``null_value``).
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pyarrow as pa

from simcit_dist.data.parquet_io import write_table
from simcit_dist.data.rejects import BAD_COORDINATE, BAD_ID, NON_FINITE, NULL_VALUE, RejectBuffer
from simcit_dist.data.run_output import RunReport, write_rejects
from simcit_dist.data.schemas import ITEM_ID, SchemaError, embedding_type, embeddings_to_arrow
from simcit_dist.inputs.config import FoursquareConfig
from simcit_dist.inputs.converters.behaviour import Interactions, behaviour_views, min_count_filter
from simcit_dist.storage import Location, StorageConfig, read_bytes, resolve

log = logging.getLogger(__name__)


def load_npy(loc: Location, columns: int) -> np.ndarray:
    """A small (N, columns) numeric .npy (never pickled)."""
    try:
        arr = np.load(io.BytesIO(read_bytes(loc)), allow_pickle=False)
    except ValueError as e:
        raise SchemaError(f"{loc.uri}: not a numeric .npy array: {e}") from e
    if arr.ndim != 2 or arr.shape[1] != columns or arr.dtype.kind not in "iuf":
        raise SchemaError(f"{loc.uri}: expected a numeric (N, {columns}) array, got {arr.shape} {arr.dtype}")
    return arr


def _integral(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "iu":
        return np.ones(len(values), dtype=bool)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2.0 ** 62)


def parse_pois(loc: Location) -> tuple[np.ndarray, np.ndarray, RejectBuffer]:
    """(poi ids, (P, 2) lat/lon, rejects) of the valid POIs."""
    arr = load_npy(loc, 3)
    rejects = RejectBuffer(loc.uri)
    ok = _integral(arr[:, 0])
    rejects.add(np.flatnonzero(~ok), BAD_ID, "poi_id", [f"poi id {v!r} is not an integer" for v in arr[~ok, 0]])
    coords = arr[:, 1:3].astype(np.float64)
    finite = np.isfinite(coords).all(axis=1)
    idx = np.flatnonzero(ok & ~finite)
    rejects.add(idx, NON_FINITE, "latitude,longitude", [f"coordinates {tuple(coords[i])}" for i in idx])
    ok &= finite
    with np.errstate(invalid="ignore"):
        inside = (np.abs(coords[:, 0]) <= 90) & (np.abs(coords[:, 1]) <= 180)
    idx = np.flatnonzero(ok & ~inside)
    rejects.add(idx, BAD_COORDINATE, "latitude,longitude",
                [f"({coords[i, 0]}, {coords[i, 1]}) outside [-90, 90] x [-180, 180]" for i in idx])
    ok &= inside
    return arr[ok, 0].astype(np.int64), coords[ok], rejects


def parse_checkins(loc: Location) -> tuple[Interactions, RejectBuffer, int]:
    arr = load_npy(loc, 3)
    rejects = RejectBuffer(loc.uri)
    ok = np.ones(len(arr), dtype=bool)
    for col, name, reason in ((0, "user_id", BAD_ID), (1, ITEM_ID, BAD_ID), (2, "timestamp", NULL_VALUE)):
        bad = ok & ~_integral(arr[:, col])
        idx = np.flatnonzero(bad)
        rejects.add(idx, reason, name, [f"{name} {arr[i, col]!r} is not an integer" for i in idx])
        ok &= ~bad
    good = arr[ok].astype(np.int64)
    return Interactions.sorted(good[:, 0], good[:, 1], good[:, 2]), rejects, len(arr)


def geo_embedding(coords: np.ndarray, features: int, scale: float, seed: int) -> np.ndarray:
    """(P, 2 + 2F) float32: standardised lat/lon, then random Fourier features of them."""
    std = coords.std(axis=0)
    x = (coords - coords.mean(axis=0)) / np.where(std > 0, std, 1.0)
    if features == 0:
        return x.astype(np.float32)
    freqs = np.random.default_rng([seed, 7]).normal(0.0, scale, size=(2, features))
    proj = 2 * np.pi * x @ freqs
    rff = np.concatenate([np.cos(proj), np.sin(proj)], axis=1) / np.sqrt(features)
    return np.concatenate([x, rff], axis=1).astype(np.float32)


def convert_foursquare(cfg: FoursquareConfig, storage: StorageConfig | None, staged: Location,
                       report: RunReport) -> None:
    poi_ids, coords, poi_rejects = parse_pois(resolve(cfg.pois, storage))
    inter, checkin_rejects, rows = parse_checkins(resolve(cfg.checkins, storage))
    write_rejects(staged, "pois", poi_rejects)
    write_rejects(staged, "checkins", checkin_rejects)
    catalog, interactions = report.table("catalog"), report.table("interactions")
    catalog.input_rows, catalog.files = len(poi_ids) + len(poi_rejects), 1
    catalog.add_rejects(poi_rejects.counts)
    interactions.input_rows, interactions.files = rows, 1
    interactions.add_rejects(checkin_rejects.counts)

    b = cfg.behaviour
    keep_items = np.ones(len(poi_ids), dtype=bool)
    if b.min_item_interactions or b.min_user_interactions:
        keep = min_count_filter(inter, b.min_item_interactions, b.min_user_interactions)
        interactions.notes["filtered_min_count"] = int((~keep).sum())
        inter = inter.select(keep)
        keep_items = np.isin(poi_ids, inter.item_id)
        catalog.notes["filtered_min_count"] = int((~keep_items).sum())

    emb_geo = geo_embedding(coords, cfg.fourier_features, cfg.fourier_scale, b.seed)[keep_items]
    poi_ids, coords = poi_ids[keep_items], coords[keep_items]
    pairs, emb_cf, has_cf, notes = behaviour_views(inter, poi_ids, b)
    interactions.notes.update(notes)
    table = pa.table({ITEM_ID: pa.array(poi_ids, pa.int64()), "emb_geo": embeddings_to_arrow(emb_geo)})
    if emb_cf is not None:
        column = pa.FixedSizeListArray.from_arrays(pa.array(emb_cf.reshape(-1)), b.cf_dim, mask=pa.array(~has_cf))
        table = table.append_column(pa.field("emb_cf", embedding_type(b.cf_dim)), column)
        catalog.missing_modality["emb_cf"] = int((~has_cf).sum())
    table = table.append_column("latitude", pa.array(coords[:, 0])).append_column("longitude", pa.array(coords[:, 1]))
    write_table(table.sort_by(ITEM_ID), staged.child("catalog", "part-00000.parquet"))
    write_table(inter.table(), staged.child("interactions", "part-00000.parquet"))
    write_table(pairs, staged.child("pairs", "part-00000.parquet"))
    catalog.output_rows, interactions.output_rows = table.num_rows, len(inter)
    report.table("pairs").output_rows = pairs.num_rows
    report.table("pairs").notes["derived_from"] = f"training check-ins, window {b.window}"
    log.info("foursquare: %d POIs, %d check-ins, %d pairs", table.num_rows, len(inter), pairs.num_rows)
