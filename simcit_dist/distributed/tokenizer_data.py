"""Tokenizer training inputs on the torch side: the catalog's modality columns, and the collate
function that turns Arrow batches into the tokenizer's tensors.

The Ray Data side (pair views, the held-back split, the streaming datasets) lives in
:mod:`simcit_dist.data.pair_views` and :mod:`simcit_dist.data.training_rows`, which import no
torch: their tasks run in pooled workers that import the task's module first.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pyarrow as pa
import torch
from ray.data.collate_fn import ArrowBatchCollateFn

from simcit_dist.data.parquet_io import read_schema
from simcit_dist.data.schemas import (
    ITEM_ID,
    PARTNER_ID,
    PARTNER_PREFIX,
    arrow_to_embeddings,
    check_catalog_schema,
    embedding_columns,
    id_array,
)
from simcit_dist.storage import Location


def resolve_modalities(catalog: Location, wanted: Sequence[str]) -> dict[str, int]:
    """Modality columns and dims, checked against the catalog's schema (fails before training)."""
    schema = read_schema(catalog)
    if not wanted:
        found = embedding_columns(schema)
        if not found:
            raise ValueError(f"{catalog.uri}: no fixed_size_list<float32> embedding columns in {schema.names}")
        return dict(sorted(found.items()))
    return check_catalog_schema(schema, dict.fromkeys(wanted), catalog.uri)


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
    columns = {ITEM_ID: id_array(batch.column(ITEM_ID))}
    columns.update({m: arrow_to_embeddings(batch.column(m)) for m in modalities})
    if with_partner:
        columns[PARTNER_ID] = id_array(batch.column(PARTNER_ID), missing=-1)
        columns.update({PARTNER_PREFIX + m: arrow_to_embeddings(batch.column(PARTNER_PREFIX + m)) for m in modalities})
    with warnings.catch_warnings():  # read-only Arrow buffers: the model never writes to its inputs
        warnings.simplefilter("ignore", UserWarning)
        out = {k: torch.from_numpy(v) for k, v in columns.items()}
    return {k: v.to(device, non_blocking=True) for k, v in out.items()}
