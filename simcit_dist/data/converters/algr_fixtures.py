"""Write AL-GR-format files from known values (test fixtures, benchmark inputs).

The writers follow the formats the converters read (see the FORGE README and
``../shared/data/algr_sample/README.md``), so a round trip write -> convert -> read can be
compared exactly. They take already-encoded rows where a test needs malformed ones.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from simcit_dist.data import base62
from simcit_dist.storage import Location, write_bytes

SYSTEM_PROMPT = "You are a recommender system."  # the real rows carry a Chinese prompt here


def feature_b64(vector: np.ndarray) -> str:
    """base64 of little-endian float32 values (the Item-EMB ``feature`` column)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def item_emb_csv_rows(ids: np.ndarray, embeddings: np.ndarray, alphabet: str = base62.ALPHABET) -> list[str]:
    """One ``base62_string,feature`` line per item."""
    keys = base62.encode_array(np.asarray(ids, dtype=np.int64), alphabet).to_pylist()
    return [f"{k},{feature_b64(e)}" for k, e in zip(keys, embeddings)]


def write_lines(loc: Location, header: str | None, lines: Sequence[str], newline: str = "\n") -> None:
    text = newline.join(([header] if header is not None else []) + list(lines)) + newline
    write_bytes(loc, text.encode("utf-8"))


def write_npz(loc: Location, arrays: Mapping[str, Any], compressed: bool = False) -> None:
    """``np.savez`` (members stored) or ``np.savez_compressed`` into storage."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)  # type: ignore[arg-type]
    write_bytes(loc, buf.getvalue())


def sid_tokens(codes: np.ndarray, codebook_size: int = 8192) -> str:
    """(items, levels) codes -> ``C{c1}C{c2 + K}C{c3 + 2K}...``."""
    codes = np.asarray(codes)
    offsets = np.arange(codes.shape[1]) * codebook_size
    return "".join(f"C{t}" for t in (codes + offsets).reshape(-1))


def sequence_row(sample_id: str, history: np.ndarray, answer: np.ndarray, codebook_size: int = 8192) -> str:
    """One tab-separated ``id, system, user, answer`` row in AL-GR's prompt layout."""
    user = f"History: {sid_tokens(history, codebook_size)}, predict the next item"
    return "\t".join([sample_id, SYSTEM_PROMPT, user, sid_tokens(answer, codebook_size)])
