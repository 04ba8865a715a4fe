"""Tokenizer training inputs on the torch side: the catalog's modality columns, and the collate
function that turns Arrow batches into the tokenizer's tensors.

The Ray Data side (pair views, the held-back split, the streaming datasets) lives in
:mod:`simcit_dist.tokenizer_training.pair_views` and :mod:`simcit_dist.tokenizer_training.training_rows`, which import no
torch: their tasks run in pooled workers that import the task's module first.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import torch
from ray.data.collate_fn import ArrowBatchCollateFn

from simcit_dist.data.parquet_io import read_schema
from simcit_dist.data.schemas import (
    check_catalog_schema,
    embedding_columns,
)
from simcit_dist.storage import Location
from simcit_dist.tokenizer.inputs import arrow_to_batch


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
