"""What the converters share: the AL-GR catalog layout and small helpers for row reasons."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from simcit_dist.data import base62
from simcit_dist.data.rejects import BAD_ID, ID_OVERFLOW, RejectBuffer
from simcit_dist.data.schemas import catalog_schema

EMB = "emb"  # AL-GR's single 512-d modality
ITEM_KEY = "item_key"  # the original AL-GR id string (base62), kept beside the decoded int64


def algr_catalog_schema(dim: int) -> pa.Schema:
    return catalog_schema({EMB: dim}, [ITEM_KEY])


def short(value: object, limit: int = 40) -> str:
    """A value for a reject detail, cut to ``limit`` characters."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def reject_bad_base62(rejects: RejectBuffer, rows: np.ndarray, status: np.ndarray, raw: list[bytes] | list[str],
                      column: str, alphabet: str) -> None:
    """Reject rows whose base62 id did not decode (``status`` from :func:`base62.decode_array`)."""
    for code, reason, why in ((base62.BAD, BAD_ID, "not a canonical base62 id (alphabet "
                               f"{alphabet[:3]}..{alphabet[-3:]}, no leading '{alphabet[0]}')"),
                              (base62.OVERFLOW, ID_OVERFLOW, "base62 id above int64 max "
                               f"{base62.encode_one(base62.INT64_MAX, alphabet)!r}")):
        idx = np.flatnonzero(status == code)
        rejects.add(rows[idx], reason, column, [f"{short(raw[i])}: {why}" for i in idx])
