"""Small builders shared by tests: catalogs on local disk or S3, tokenizer artifacts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from simcit_dist.data.parquet_io import write_table
from simcit_dist.data.schemas import arrow_to_embeddings, embeddings_to_arrow
from simcit_dist.inputs.synthetic import SyntheticConfig, build_tree, item_chunk, pair_chunk
from simcit_dist.storage import Location, StorageConfig, resolve
from simcit_dist.tokenizer import RQKMeansConfig, TokenizerConfig, build_tokenizer, save_artifact
from simcit_dist.tokenizer.inputs import arrow_to_batch

SMALL_MODALITIES = {"emb_a": 8, "emb_b": 12}


def _small_cfg(num_items: int, seed: int, offset: int) -> SyntheticConfig:
    return SyntheticConfig(num_items=num_items, modalities=dict(SMALL_MODALITIES), branching=[4, 4],
                           level_scales=[1.0, 0.4], item_noise=0.3, seed=seed, item_id_offset=offset,
                           chunk_items=num_items)


def small_catalog(num_items: int = 3000, seed: int = 0, offset: int = 1000) -> pa.Table:
    cfg = _small_cfg(num_items, seed, offset)
    return item_chunk(cfg, build_tree(cfg), 0)


def small_pairs(num_items: int = 3000, seed: int = 0, offset: int = 1000) -> pa.Table:
    """Co-occurrence pairs of :func:`small_catalog` (same leaf / sibling leaf)."""
    cfg = _small_cfg(num_items, seed, offset)
    return pair_chunk(cfg, build_tree(cfg), 0)


def write_catalog(table: pa.Table, uri: str, storage: StorageConfig | None = None, files: int = 3) -> Location:
    loc = resolve(uri, storage)
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for i in range(files):
        write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]), loc.child(f"part-{i:03d}.parquet"))
    return loc


def rqkmeans_artifact(table: pa.Table, uri: str, storage: StorageConfig | None = None, levels: int = 3,
                      codebook_size: int = 8) -> Location:
    """A fitted RQ-KMeans tokenizer saved as an artifact (fast and deterministic)."""
    cfg = TokenizerConfig(kind="rqkmeans", rqkmeans=RQKMeansConfig(num_levels=levels, codebook_size=codebook_size,
                                                                   iters=10, seed=0))
    dims = {name: table.schema.field(name).type.list_size for name in SMALL_MODALITIES}
    tok = build_tokenizer(cfg, dims)
    tok.fit([arrow_to_batch(table, list(dims))])  # type: ignore[attr-defined]
    loc = resolve(uri, storage)
    save_artifact(tok, cfg, dims, loc)
    return loc


def perturb(table: pa.Table, rows: np.ndarray, column: str = "emb_a", scale: float = 0.5, seed: int = 0) -> pa.Table:
    """Change the embeddings of ``rows`` (a day-2 edit)."""
    emb = arrow_to_embeddings(table.column(column)).copy()
    emb[rows] += scale * np.random.default_rng(seed).standard_normal((len(rows), emb.shape[1])).astype(np.float32)
    return table.set_column(table.schema.get_field_index(column), column, embeddings_to_arrow(emb))
