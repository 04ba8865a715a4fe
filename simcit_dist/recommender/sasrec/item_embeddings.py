"""Export a trained SASRec's item embedding table as a catalog modality's input.

LETTER-style tokenizers align their codes with a sequential recommender's item embeddings (the
collaborative signal of *order*, which co-occurrence counts only approximate). The table SASRec
learns (its tied input/output item embeddings) is written as ``embeddings.npy`` (N, d) float32
with ``ids.npy`` (N,) int64 in the same row order, the layout ``jobs/convert.py`` with
``source: embeddings`` reads, so it becomes an ``emb_*`` column of the catalog.

Only training positions shape these embeddings (leave-one-out: the validation and test targets are
never a training target), so a tokenizer fed with them does not see the evaluation targets.
"""

from __future__ import annotations

import io

import numpy as np

from simcit_dist.recommender.sasrec.model import SasrecModel
from simcit_dist.storage import Location, write_bytes

EMBEDDINGS_FILE = "embeddings.npy"
IDS_FILE = "ids.npy"


def item_embedding_table(model: SasrecModel) -> np.ndarray:
    """(num_items, d) float32: row i is catalog item index i (token i + 1; the padding row dropped)."""
    return model.item_embed.weight[1:].detach().float().cpu().numpy()


def write_item_embeddings(model: SasrecModel, item_ids: np.ndarray, out: Location) -> None:
    """``out/embeddings.npy`` + ``out/ids.npy``; ``item_ids`` are the catalog's ids by item index."""
    table = item_embedding_table(model)
    if len(item_ids) != len(table):
        raise ValueError(f"{out.uri}: {len(item_ids)} item ids for a table of {len(table)} items")
    write_bytes(out.child(EMBEDDINGS_FILE), _npy(table))
    write_bytes(out.child(IDS_FILE), _npy(np.asarray(item_ids, dtype=np.int64)))


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array))
    return buf.getvalue()
