"""Streaming rows of tokenizer training: the catalog (or its pair views) without the held-back
items, and the held-back sample for the SID metrics at the end of training.

The filter runs in Ray Data's read workers every epoch; this module imports no torch, so those
workers don't pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pyarrow as pa
import ray.data

from simcit_dist.data.id_sample import holdout_mask
from simcit_dist.data.parquet_io import read_dataset
from simcit_dist.data.schemas import ITEM_ID, PARTNER_ID, id_array
from simcit_dist.storage import Location


def _split_filter(batch: pa.Table, fraction: float, keep_holdout: bool) -> pa.Table:
    held = holdout_mask(batch.column(ITEM_ID).to_numpy(zero_copy_only=False), fraction)
    if keep_holdout:
        return batch.filter(pa.array(held))
    if PARTNER_ID in batch.column_names:  # a held-back item must not reach training as a partner either
        partner = id_array(batch.column(PARTNER_ID), missing=-1)
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
