"""The canonical Parquet schemas (catalog, co-occurrence pairs, interactions) and their checks.

- Catalog: ``item_id`` int64 and one ``fixed_size_list<float32>[d]`` column per modality
  (e.g. ``emb_text``, ``emb_image``, ``emb_cf``; AL-GR has a single 512-d ``emb``), plus
  optional text columns.
- Pairs: ``item_a``, ``item_b`` int64, optional ``weight`` float32.
- Interactions: ``user_id``, ``item_id``, ``timestamp`` int64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ITEM_ID = "item_id"
PARTNER_ID = "partner_item_id"  # a training row's co-occurring partner (pair views)
PARTNER_PREFIX = "partner:"  # the partner's copy of a modality column
PAIRS_SCHEMA = pa.schema([("item_a", pa.int64()), ("item_b", pa.int64()), ("weight", pa.float32())])
INTERACTIONS_SCHEMA = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.int64())])
REJECTS_SCHEMA = pa.schema(
    [("source_file", pa.string()), ("row", pa.int64()), ("column", pa.string()), ("reason", pa.string()),
     ("detail", pa.string())]
)


class SchemaError(ValueError):
    """A file does not have the columns or types the project expects; the message names both."""


def embedding_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def catalog_schema(modalities: Mapping[str, int], text_columns: Sequence[str] = ()) -> pa.Schema:
    fields = [pa.field(ITEM_ID, pa.int64(), nullable=False)]
    fields += [pa.field(name, embedding_type(dim)) for name, dim in modalities.items()]
    fields += [pa.field(name, pa.string()) for name in text_columns]
    return pa.schema(fields)


def embedding_columns(schema: pa.Schema) -> dict[str, int]:
    """Modality columns of a catalog schema: every ``fixed_size_list<float32>`` column, with its dim."""
    out: dict[str, int] = {}
    for field in schema:
        t = field.type
        if pa.types.is_fixed_size_list(t) and pa.types.is_float32(t.value_type):
            out[field.name] = t.list_size
    return out


def check_catalog_schema(schema: pa.Schema, expected: Mapping[str, int | None], source: str) -> dict[str, int]:
    """Check ``item_id`` and each expected modality column (dim ``None`` = any). Returns column dims."""
    if ITEM_ID not in schema.names:
        raise SchemaError(f"{source}: missing column 'item_id' (int64); columns are {schema.names}")
    if not pa.types.is_integer(schema.field(ITEM_ID).type):
        raise SchemaError(f"{source}: column 'item_id' has type {schema.field(ITEM_ID).type}, expected int64")
    found = embedding_columns(schema)
    dims: dict[str, int] = {}
    for name, dim in expected.items():
        if name not in schema.names:
            raise SchemaError(
                f"{source}: missing modality column {name!r}; embedding columns present: {sorted(found)}"
            )
        if name not in found:
            raise SchemaError(
                f"{source}: column {name!r} has type {schema.field(name).type}, expected fixed_size_list<float32>"
            )
        if dim is not None and found[name] != dim:
            raise SchemaError(f"{source}: column {name!r} has dim {found[name]}, expected {dim}")
        dims[name] = found[name]
    return dims


def check_columns(schema: pa.Schema, expected: pa.Schema, source: str) -> None:
    """Each required column of ``expected`` is present with an integer/float type of the right kind."""
    for field in expected:
        if field.name == "weight":  # optional in pairs
            continue
        if field.name not in schema.names:
            raise SchemaError(f"{source}: missing column {field.name!r} ({field.type}); columns are {schema.names}")
        got = schema.field(field.name).type
        if pa.types.is_integer(field.type) and not pa.types.is_integer(got):
            raise SchemaError(f"{source}: column {field.name!r} has type {got}, expected {field.type}")


def embeddings_to_arrow(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """(N, d) float32 -> fixed_size_list<float32>[d] without copying the values."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D embedding matrix, got shape {matrix.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def id_array(column: pa.ChunkedArray | pa.Array, missing: int | None = None) -> np.ndarray:
    """Contiguous int64 ids of an Arrow column (nulls become ``missing`` when given)."""
    if missing is not None and column.null_count:
        column = pc.fill_null(column, missing)
    return np.ascontiguousarray(column.to_numpy(), dtype=np.int64)


def arrow_to_embeddings(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """fixed_size_list<float32>[d] -> (N, d) float32. Nulls become NaN rows (so checks can see them)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    dim = column.type.list_size
    if column.null_count:
        column = pc.fill_null(column, pa.scalar([float("nan")] * dim, type=column.type))
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(len(column), dim)
