"""The tokenizer batch format and the small tensor helpers every tokenizer shares.

A batch is a dict of tensors:

- ``<column>`` -> float32 (B, d_m) for each modality column; an all-NaN row means the item
  lacks that modality (it is masked out of fusion and zero-filled before any MLP);
- ``"item_id"`` -> int64 (B,);
- optionally a co-occurring partner: ``"partner:<column>"`` -> (B, d_m) for every modality
  and ``"partner_item_id"`` -> int64 (B,), -1 where the row has no partner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor, nn

from simcit_dist.data.schemas import ITEM_ID, PARTNER_ID, PARTNER_PREFIX, arrow_to_embeddings

Batch = Mapping[str, Tensor]


def partner_column(column: str) -> str:
    return PARTNER_PREFIX + column


def has_partner(batch: Batch) -> bool:
    return PARTNER_ID in batch


def modality_input(batch: Batch, column: str, dim: int) -> tuple[Tensor, Tensor]:
    """(zero-filled float32 (B, dim), present bool (B,)) for one modality column."""
    if column not in batch:
        raise KeyError(f"batch has no modality column {column!r}; columns are {sorted(batch)}")
    x = batch[column]
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"batch column {column!r} has shape {tuple(x.shape)}, expected (B, {dim})")
    x = x.float()
    nan = torch.isnan(x)  # (B, dim)
    present = ~nan.all(dim=1)
    if bool(nan.any()):  # one sync per column; most batches have no NaN and skip the copy
        x = x.masked_fill(nan, 0.0)
    return x, present


def concat_modalities(batch: Batch, dims: Mapping[str, int], normalize: bool = False) -> Tensor:
    """(B, sum d_m): modalities concatenated in sorted column order, missing ones zero-filled."""
    parts = []
    for column in sorted(dims):
        x, _ = modality_input(batch, column, dims[column])
        if normalize:
            x = nn.functional.normalize(x, dim=1)
        parts.append(x)
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def item_ids(batch: Batch) -> Tensor:
    if ITEM_ID not in batch:
        raise KeyError(f"batch has no {ITEM_ID!r} column; columns are {sorted(batch)}")
    return batch[ITEM_ID].long()


def batch_from_arrow(table: pa.Table, columns: Sequence[str]) -> dict[str, Tensor]:
    """A tokenizer batch from a catalog table (``item_id`` plus the given modality columns)."""
    # Arrow buffers are read-only; torch wants writable memory, so those are copied once here.
    ids = np.require(table.column(ITEM_ID).to_numpy().astype(np.int64, copy=False), requirements="W")
    batch = {ITEM_ID: torch.from_numpy(ids)}
    for column in columns:
        batch[column] = torch.from_numpy(np.require(arrow_to_embeddings(table.column(column)), requirements="W"))
    return batch


def to_device(batch: Batch, device: torch.device | str) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def slice_batch(batch: Batch, start: int, stop: int) -> dict[str, Tensor]:
    return {k: v[start:stop] for k, v in batch.items()}
