"""File- and row-level checks of catalog, pairs and interactions batches (pure functions, no IO).

File level (a :class:`SchemaError` naming the file, the column and what was expected): a
missing ``item_id`` / modality / pair / interaction column, a non-integer id column, a
modality column that is not a list of floats, or a fixed-size modality of the wrong width.

Row level (each rejected row goes to the :class:`RejectBuffer` once, with the first failing
check, in this order):

- catalog: ``bad_id`` (null ``item_id``); per modality ``wrong_dimension`` (variable-length
  lists only), ``non_finite``, ``zero_vector``; then ``no_modality`` (every modality null). A
  null modality alone is allowed: the model masks missing modalities; it is counted instead.
- pairs: ``bad_id`` (null id), ``self_pair``, ``bad_weight`` (NaN/Inf or negative; a missing
  or null weight means 1.0);
- interactions: ``bad_id`` (null ``user_id`` / ``item_id``), ``null_value`` (null ``timestamp``).

Duplicate ids and references to unknown items need all files at once; they are checked by
:mod:`simcit_dist.inputs.prepare` through hash buckets.

Output tables are canonical: ``item_id`` int64, modalities ``fixed_size_list<float32>[d]``
(``float64`` and variable-length lists are converted), pairs ``weight`` float32, ids int64;
other columns pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simcit_dist.data.rejects import (
    BAD_ID,
    BAD_WEIGHT,
    NO_MODALITY,
    NON_FINITE,
    NULL_VALUE,
    SELF_PAIR,
    WRONG_DIMENSION,
    ZERO_VECTOR,
    RejectBuffer,
)
from simcit_dist.data.schemas import INTERACTIONS_SCHEMA, ITEM_ID, PAIRS_SCHEMA, SchemaError, check_columns

PAIR_REFS = ("item_a", "item_b")
INTERACTION_REFS = ("item_id",)


def _float_list(t: pa.DataType) -> bool:
    return (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)) and \
        pa.types.is_floating(t.value_type)


def catalog_modalities(schema: pa.Schema, expected: Mapping[str, int], source: str) -> dict[str, int]:
    """The modality columns to validate, name -> dim; a SchemaError for a file that cannot pass.

    With ``expected`` empty, every fixed-size float list column is a modality (its width is its dim).
    """
    if ITEM_ID not in schema.names:
        raise SchemaError(f"{source}: missing column 'item_id' (int64); columns are {schema.names}")
    if not pa.types.is_integer(schema.field(ITEM_ID).type):
        raise SchemaError(f"{source}: column 'item_id' has type {schema.field(ITEM_ID).type}, expected int64")
    if not expected:
        found = {f.name: f.type.list_size for f in schema
                 if pa.types.is_fixed_size_list(f.type) and pa.types.is_floating(f.type.value_type)}
        if not found:
            raise SchemaError(f"{source}: no modality column (fixed_size_list<float32>[d]); columns are "
                              f"{[f'{f.name}: {f.type}' for f in schema]}")
        return found
    for name, dim in expected.items():
        if name not in schema.names:
            raise SchemaError(f"{source}: missing modality column {name!r} (list<float32>[{dim}]); expected "
                              f"modalities {dict(expected)}, columns are {schema.names}")
        t = schema.field(name).type
        if not _float_list(t):
            raise SchemaError(f"{source}: column {name!r} has type {t}, expected fixed_size_list<float32>[{dim}]")
        if pa.types.is_fixed_size_list(t) and t.list_size != dim:
            raise SchemaError(f"{source}: column {name!r} has dim {t.list_size}, expected {dim}")
    return dict(expected)


class _RowChecks:
    """Applies checks in order; a row failing one is rejected with it and skips the rest."""

    def __init__(self, n: int, first_row: int, rejects: RejectBuffer) -> None:
        self.rows = first_row + np.arange(n)
        self.keep = np.ones(n, dtype=bool)
        self.rejects = rejects

    def reject(self, mask: np.ndarray, reason: str, column: str | None, detail: str,
               values: np.ndarray | None = None) -> None:
        """Reject ``mask & keep``; with ``values``, ``{v}`` in ``detail`` is each rejected row's value."""
        hit = np.flatnonzero(mask & self.keep)
        if hit.size:
            texts = detail if values is None else [detail.format(v=values[i]) for i in hit]
            self.rejects.add(self.rows[hit], reason, column, texts)
            self.keep[hit] = False


def _null_mask(column: pa.Array) -> np.ndarray:
    if not column.null_count:
        return np.zeros(len(column), dtype=bool)
    return column.is_null().to_numpy(zero_copy_only=False)


@dataclass
class CheckedCatalog:
    """Result of the row checks of one catalog batch."""

    keep: np.ndarray  # rows passing every row check
    embeddings: dict[str, np.ndarray]  # name -> (n, dim) float32 (rows that are null/wrong are undefined)
    present: dict[str, np.ndarray]  # name -> the modality is there (not null)

    def table(self, batch: pa.RecordBatch, rows: np.ndarray, drop_columns: tuple[str, ...] = ()) -> pa.Table:
        """The canonical table of ``rows`` (a boolean mask) of ``batch``."""
        idx = pa.array(np.flatnonzero(rows))
        out = pa.Table.from_batches([batch]).take(idx)
        out = out.set_column(out.schema.get_field_index(ITEM_ID), ITEM_ID, pc.cast(out[ITEM_ID], pa.int64()))
        for name, emb in self.embeddings.items():
            values = np.ascontiguousarray(emb[rows], dtype=np.float32)
            column = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), emb.shape[1],
                                                       mask=pa.array(~self.present[name][rows]))
            out = out.set_column(out.schema.get_field_index(name), name, column)
        return out.drop_columns([c for c in drop_columns if c in out.column_names])


def _embedding_matrix(column: pa.Array, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix (n, dim) float32, present, wrong length) of a float list column."""
    n = len(column)
    nulls = _null_mask(column)
    if pa.types.is_fixed_size_list(column.type):
        flat = pc.list_flatten(column.fill_null(pa.scalar([0.0] * dim, column.type)) if nulls.any() else column)
        matrix = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, dim)
        return matrix, ~nulls, np.zeros(n, dtype=bool)
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    wrong = ~nulls & (lengths != dim)
    good = ~nulls & ~wrong
    matrix = np.zeros((n, dim), dtype=np.float32)
    if good.any():
        flat = pc.list_flatten(column.filter(pa.array(good)))
        matrix[good] = flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    return matrix, good, wrong


def check_catalog_batch(batch: pa.RecordBatch, first_row: int, modalities: Mapping[str, int],
                        rejects: RejectBuffer) -> CheckedCatalog:
    checks = _RowChecks(batch.num_rows, first_row, rejects)
    checks.reject(_null_mask(batch.column(ITEM_ID)), BAD_ID, ITEM_ID, "item_id is null")
    embeddings, present = {}, {}
    for name, dim in modalities.items():
        column = batch.column(name)
        matrix, here, wrong = _embedding_matrix(column, dim)
        if wrong.any():
            lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
            checks.reject(wrong, WRONG_DIMENSION, name, f"{name} has {{v}} values, expected {dim}", lengths)
        with np.errstate(invalid="ignore", over="ignore"):
            bad_values = (~np.isfinite(matrix)).sum(axis=1)
            checks.reject(here & (bad_values > 0), NON_FINITE, name,
                          f"{name} has {{v}} NaN/Inf values (after cast to float32)", bad_values)
            checks.reject(here & (np.abs(matrix).max(axis=1, initial=0.0) == 0), ZERO_VECTOR, name,
                          f"{name} is all zeros ({dim} values)")
        embeddings[name], present[name] = matrix, here
    if modalities:
        none = ~np.any(np.stack([present[m] for m in modalities]), axis=0)
        checks.reject(none, NO_MODALITY, ",".join(modalities), f"every modality ({', '.join(modalities)}) is null")
    return CheckedCatalog(checks.keep, embeddings, present)


def check_ref_columns(schema: pa.Schema, kind: str, source: str) -> None:
    """Pairs / interactions files need their id columns (and timestamp) with integer types."""
    check_columns(schema, PAIRS_SCHEMA if kind == "pairs" else INTERACTIONS_SCHEMA, source)
    if kind == "pairs" and "weight" in schema.names and not pa.types.is_floating(schema.field("weight").type) \
            and not pa.types.is_integer(schema.field("weight").type):
        raise SchemaError(f"{source}: column 'weight' has type {schema.field('weight').type}, expected float32")


def check_ref_batch(batch: pa.RecordBatch, first_row: int, kind: str, rejects: RejectBuffer
                    ) -> tuple[np.ndarray, pa.Table]:
    """(rows passing the row checks, the batch in canonical types) for a pairs / interactions batch."""
    n = batch.num_rows
    checks = _RowChecks(n, first_row, rejects)
    table = pa.Table.from_batches([batch])
    for col in PAIR_REFS if kind == "pairs" else ("user_id", "item_id"):
        checks.reject(_null_mask(batch.column(col)), BAD_ID, col, f"{col} is null")
        table = table.set_column(table.schema.get_field_index(col), col, pc.cast(table[col], pa.int64()))
    if kind == "pairs":
        a = table["item_a"].fill_null(-1).to_numpy()
        b = table["item_b"].fill_null(-1).to_numpy()
        checks.reject(a == b, SELF_PAIR, "item_a", "item_a == item_b == {v}", a)
        weight = (pc.cast(table["weight"], pa.float32()).fill_null(1.0).to_numpy(zero_copy_only=False)
                  if "weight" in table.column_names else np.ones(n, dtype=np.float32))
        with np.errstate(invalid="ignore"):
            checks.reject(~np.isfinite(weight) | (weight < 0), BAD_WEIGHT, "weight",
                          "weight {v} is not a finite number >= 0", weight)
        column = pa.array(weight, pa.float32())
        i = table.schema.get_field_index("weight")
        table = table.set_column(i, "weight", column) if i >= 0 else table.append_column("weight", column)
    else:
        checks.reject(_null_mask(batch.column("timestamp")), NULL_VALUE, "timestamp", "timestamp is null")
        table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp",
                                 pc.cast(table["timestamp"], pa.int64()))
    return checks.keep, table
