"""The tokenizer batch format and the small tensor helpers every tokenizer shares.

A batch is a dict of tensors:

- ``<column>`` -> float32 (B, d_m) for each modality column; an all-NaN row means the item
  lacks that modality (it is masked out of fusion and zero-filled before any MLP);
- ``"item_id"`` -> int64 (B,);
- optionally a co-occurring partner: ``"partner:<column>"`` -> (B, d_m) for every modality
  and ``"partner_item_id"`` -> int64 (B,), -1 where the row has no partner.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import pyarrow as pa
import torch
from torch import Tensor, nn

from simcit_dist.data.schemas import ITEM_ID, PARTNER_ID, PARTNER_PREFIX, arrow_to_embeddings, id_array

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


def arrow_to_batch(table: pa.Table, modalities: Sequence[str], with_partner: bool = False,
                   device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Arrow rows -> tokenizer batch: the one conversion used by training, assignment, evaluation,
    the tests and the benchmarks. Embeddings are zero-copy views of the Arrow buffers (null ->
    all-NaN rows); ids stay int64 (a missing partner -> -1)."""
    columns = {ITEM_ID: id_array(table.column(ITEM_ID))}
    columns.update({m: arrow_to_embeddings(table.column(m)) for m in modalities})
    if with_partner:
        columns[PARTNER_ID] = id_array(table.column(PARTNER_ID), missing=-1)
        columns.update({PARTNER_PREFIX + m: arrow_to_embeddings(table.column(PARTNER_PREFIX + m)) for m in modalities})
    with warnings.catch_warnings():  # read-only Arrow buffers: the models never write to their inputs
        warnings.simplefilter("ignore", UserWarning)
        out = {k: torch.from_numpy(v) for k, v in columns.items()}
    return {k: v.to(device, non_blocking=True) for k, v in out.items()}


def to_device(batch: Batch, device: torch.device | str) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def slice_batch(batch: Batch, start: int, stop: int) -> dict[str, Tensor]:
    return {k: v[start:stop] for k, v in batch.items()}
