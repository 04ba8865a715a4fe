"""Rejected rows: the stable reason codes, a per-file collector, and per-table counts.

Every row a converter or ``prepare_data`` does not pass on is written to ``rejects/`` with
``REJECTS_SCHEMA`` (source_file, row, column, reason, detail) -- nothing is dropped silently.
``row`` is the 0-based data row in ``source_file`` (CSV/TSV: the header line is not a row; npz:
``<file>::<member>`` and the array row; JSON objects: the entry's position). A row is rejected
once, with the first check it fails.

Reason codes are the stable snake_case constants below (``REASONS`` lists them all);
dashboards and tests match on them. ``missing_column`` is file-level: it is raised as a
:class:`SchemaError` and recorded as the run's error, never as rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from simcit_dist.data.schemas import REJECTS_SCHEMA

BAD_ID = "bad_id"  # id null, not an integer, or not a canonical base62 string
ID_OVERFLOW = "id_overflow"  # base62 id above 2**63 - 1
WRONG_DIMENSION = "wrong_dimension"  # a (variable-length) embedding with the wrong number of values
NON_FINITE = "non_finite"  # NaN or +-Inf in an embedding (or in a coordinate / weight)
ZERO_VECTOR = "zero_vector"  # an embedding of all zeros (no direction to learn from)
NO_MODALITY = "no_modality"  # every modality of the item is null: nothing to tokenize
DUPLICATE_ITEM_ID = "duplicate_item_id"  # item_id seen before (first valid occurrence by (file, row) is kept)
UNKNOWN_ITEM = "unknown_item"  # a pair / interaction names an item not in the validated catalog
SELF_PAIR = "self_pair"  # a co-occurrence pair of an item with itself
BAD_WEIGHT = "bad_weight"  # pair weight NaN/Inf or negative
NULL_VALUE = "null_value"  # a required non-id column (e.g. timestamp) is null
BAD_BASE64 = "bad_base64"  # Item-EMB feature is not valid base64
WRONG_BYTE_LENGTH = "wrong_byte_length"  # decoded feature is not dim x 4 bytes
MALFORMED_ROW = "malformed_row"  # a CSV/TSV line with the wrong number of fields or bad encoding
BAD_SID = "bad_sid"  # AL-GR SID tokens missing, not a multiple of the levels, or out of a level's range
BAD_ROW_INDEX = "bad_row_index"  # npz row index out of range, or a second id for an already mapped row
UNMAPPED_ROW = "unmapped_row"  # npz embeds row that no id maps to
BAD_COORDINATE = "bad_coordinate"  # latitude/longitude outside [-90, 90] / [-180, 180]
MISSING_COLUMN = "missing_column"  # file-level: raised as SchemaError, recorded in the summary's error

REASONS = (BAD_ID, ID_OVERFLOW, WRONG_DIMENSION, NON_FINITE, ZERO_VECTOR, NO_MODALITY, DUPLICATE_ITEM_ID,
           UNKNOWN_ITEM, SELF_PAIR, BAD_WEIGHT, NULL_VALUE, BAD_BASE64, WRONG_BYTE_LENGTH, MALFORMED_ROW, BAD_SID,
           BAD_ROW_INDEX, UNMAPPED_ROW, BAD_COORDINATE, MISSING_COLUMN)


class RejectThresholdError(ValueError):
    """More rows were rejected than ``max_reject_fraction`` allows; the message has the counts."""


class RejectBuffer:
    """Rejected rows of one source, collected column-wise; :meth:`table` builds the Parquet table."""

    def __init__(self, source_file: str) -> None:
        self.source_file = source_file
        self._rows: list[np.ndarray] = []
        self._columns: list[str | None] = []
        self._reasons: list[str] = []
        self._details: list[str] = []
        self.counts: dict[str, int] = {}

    def add(self, rows: Iterable[int] | np.ndarray, reason: str, column: str | None,
            details: Sequence[str] | str) -> None:
        """Reject ``rows`` for ``reason``; ``details`` is one string per row, or one for all."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size == 0:
            return
        if reason not in REASONS:
            raise ValueError(f"unknown reject reason {reason!r}; known: {REASONS}")
        texts = [details] * rows.size if isinstance(details, str) else list(details)
        if len(texts) != rows.size:
            raise ValueError(f"{rows.size} rows but {len(texts)} details")
        self._rows.append(rows)
        self._columns += [column] * rows.size
        self._reasons += [reason] * rows.size
        self._details += texts
        self.counts[reason] = self.counts.get(reason, 0) + int(rows.size)

    def __len__(self) -> int:
        return len(self._reasons)

    def table(self) -> pa.Table:
        rows = np.concatenate(self._rows) if self._rows else np.zeros(0, np.int64)
        return pa.table({"source_file": pa.array([self.source_file] * rows.size, pa.string()),
                         "row": pa.array(rows, pa.int64()), "column": pa.array(self._columns, pa.string()),
                         "reason": pa.array(self._reasons, pa.string()),
                         "detail": pa.array(self._details, pa.string())}, schema=REJECTS_SCHEMA)


@dataclass
class TableSummary:
    """Counts of one table (catalog, pairs, interactions, ...) over all of its files."""

    input_rows: int = 0
    output_rows: int = 0
    files: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> rows
    missing_modality: dict[str, int] = field(default_factory=dict)  # column -> rows where it is null
    notes: dict[str, Any] = field(default_factory=dict)  # documented non-reject facts (filters, id kinds)

    @property
    def rejected_rows(self) -> int:
        return sum(self.rejected.values())

    @property
    def reject_fraction(self) -> float:
        return self.rejected_rows / self.input_rows if self.input_rows else 0.0

    def add_rejects(self, counts: Mapping[str, int]) -> None:
        for reason, n in counts.items():
            if n:
                self.rejected[reason] = self.rejected.get(reason, 0) + int(n)

    def merge(self, other: TableSummary) -> None:
        self.input_rows += other.input_rows
        self.output_rows += other.output_rows
        self.files += other.files
        self.add_rejects(other.rejected)
        for col, n in other.missing_modality.items():
            self.missing_modality[col] = self.missing_modality.get(col, 0) + n
        for key, value in other.notes.items():  # counts add up; anything else is a label
            mine = self.notes.get(key)
            both_counts = isinstance(value, int) and isinstance(mine, int) and not isinstance(value, bool)
            self.notes[key] = mine + value if both_counts else value

    def to_dict(self) -> dict[str, Any]:
        return {"input_rows": self.input_rows, "output_rows": self.output_rows, "files": self.files,
                "rejected_rows": self.rejected_rows, "reject_fraction": round(self.reject_fraction, 8),
                "rejected": dict(sorted(self.rejected.items())),
                "missing_modality": dict(sorted(self.missing_modality.items())), "notes": self.notes}


def threshold_failures(tables: Mapping[str, TableSummary], max_fraction: float) -> list[str]:
    """One message per table whose reject fraction is above ``max_fraction``."""
    return [f"{name}: {t.rejected_rows} of {t.input_rows} rows rejected ({t.reject_fraction:.2%}) > "
            f"max_reject_fraction {max_fraction:.2%} ({', '.join(f'{r}={n}' for r, n in sorted(t.rejected.items()))})"
            for name, t in tables.items() if t.reject_fraction > max_fraction]
