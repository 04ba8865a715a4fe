"""Exports of a published SID version for other consumers.

- AL-GR token strings ``C{l1}C{l2+K}C{l3+2K}`` (FORGE / AL-GR format: level ``l`` codes are
  offset by ``l * K`` so every level has its own token range), written as Parquet beside the
  table by a Ray Data job (streaming, one output file per input file).
- ``vocab.json`` + ``codebooks.npy``: the token layout a generative recommender needs
  (specials, per-position offsets and sizes, the suffix range) and the tokenizer's codebooks.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from simcit_dist.data.parquet_io import read_dataset
from simcit_dist.sids.table import code_columns
from simcit_dist.storage import Location, copy_file, exists, write_json

SPECIAL_TOKENS = ["<pad>", "<bos>"]  # the recommender's layout: specials, levels, then suffixes


def algr_tokens(codes: np.ndarray, codebook_size: int) -> list[str]:
    """``C{c1}C{c2+K}C{c3+2K}...`` for each row of ``codes`` (N, L)."""
    shifted = codes.astype(np.int64) + np.arange(codes.shape[1]) * codebook_size
    parts = [np.char.add("C", shifted[:, level].astype(str)) for level in range(codes.shape[1])]
    out = parts[0]
    for p in parts[1:]:
        out = np.char.add(out, p)
    return out.tolist()


def _algr_batch(batch: pa.Table, levels: int, codebook_size: int) -> pa.Table:
    codes = np.stack([batch.column(c).to_numpy() for c in code_columns(levels)], axis=1)
    return pa.table({"item_id": batch.column("item_id"), "suffix": batch.column("suffix"),
                     "algr_sid": pa.array(algr_tokens(codes, codebook_size), pa.string())})


def export_algr(version: Location, levels: int, codebook_size: int) -> Location:
    """Write ``<version>/exports/algr/*.parquet`` (item_id, suffix, algr_sid)."""
    out = version.child("exports", "algr")
    ds = read_dataset(version.child("sids"), columns=["item_id", *code_columns(levels), "suffix"])
    to_tokens = partial(_algr_batch, levels=levels, codebook_size=codebook_size)
    ds.map_batches(to_tokens, batch_format="pyarrow").write_parquet(out.path, filesystem=out.fs)
    return out


def vocab(levels: int, codebook_size: int, max_suffix: int) -> dict[str, Any]:
    """Token layout: token = offset[position] + code; positions are the L levels, then the suffix."""
    sizes = [codebook_size] * levels + [max_suffix + 1]
    offsets, at = [], len(SPECIAL_TOKENS)
    for size in sizes:
        offsets.append(at)
        at += size
    return {"special_tokens": SPECIAL_TOKENS, "positions": [f"c{i + 1}" for i in range(levels)] + ["suffix"],
            "position_sizes": sizes, "position_offsets": offsets, "vocab_size": at,
            "algr_format": "C{c1}C{c2+K}C{c3+2K}..., K = codebook_size"}


def write_vocab(version: Location, levels: int, codebook_size: int, max_suffix: int,
                tokenizer_artifact: Location | None) -> None:
    """``vocab.json`` and, when the tokenizer artifact has them, its ``codebooks.npy``."""
    write_json(version.child("vocab.json"), vocab(levels, codebook_size, max(max_suffix, 0)))
    if tokenizer_artifact is not None and exists(tokenizer_artifact.child("codebooks.npy")):
        copy_file(tokenizer_artifact.child("codebooks.npy"), version.child("codebooks.npy"))
