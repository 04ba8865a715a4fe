"""Simulate the next day's catalog snapshot: some items removed, some changed, some added.

Used by the demo and the benchmarks to exercise nightly re-tokenization. Every input file is
rewritten by its own Ray task (streaming, bounded memory); which items are removed or changed
depends only on a hash of ``item_id`` and the seed, so the result is deterministic. New items
come from the same synthetic cluster tree (indices after the last day-1 item).
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from simcit_dist.data.fingerprint import mix64
from simcit_dist.data.parquet_io import parquet_files, read_table, write_table
from simcit_dist.data.schemas import ITEM_ID, arrow_to_embeddings, embedding_columns, embeddings_to_arrow
from simcit_dist.inputs.synthetic import SyntheticConfig, build_tree, item_chunk
from simcit_dist.storage import Location, StorageConfig, delete_dir, replace_dir, resolve, staging_sibling

log = logging.getLogger(__name__)


@dataclass
class NextDayConfig:
    remove_fraction: float = 0.02
    change_fraction: float = 0.03
    add_fraction: float = 0.03
    change_scale: float = 0.5  # changed embeddings get N(0, change_scale^2 * var) added
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("remove_fraction", "change_fraction", "add_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.remove_fraction + self.change_fraction >= 1.0:
            raise ValueError("remove_fraction + change_fraction must be < 1")


def _uniform(ids: np.ndarray, seed: int) -> np.ndarray:
    """A deterministic U[0, 1) per item id."""
    return (mix64(ids.astype(np.int64).view(np.uint64) ^ np.uint64(seed)) >> np.uint64(11)).astype(np.float64) / 2**53


@ray.remote
def _rewrite_file(src: Location, dst: Location, cfg: NextDayConfig) -> dict[str, int]:
    table = read_table(src)
    u = _uniform(table.column(ITEM_ID).to_numpy(), cfg.seed)
    keep = u >= cfg.remove_fraction
    change = keep & (u < cfg.remove_fraction + cfg.change_fraction)
    rng = np.random.default_rng([cfg.seed, zlib.crc32(src.path.rsplit('/', 1)[-1].encode())])
    for name in embedding_columns(table.schema):
        emb = arrow_to_embeddings(table.column(name)).copy()
        noise = rng.standard_normal(emb.shape).astype(np.float32) * cfg.change_scale * emb.std(0, keepdims=True)
        emb[change] += noise[change]
        table = table.set_column(table.schema.get_field_index(name), name, embeddings_to_arrow(emb))
    write_table(table.filter(pa.array(keep)), dst)
    return {"kept": int(keep.sum()), "removed": int((~keep).sum()), "changed": int(change.sum())}


def simulate_next_day(catalog: str, output: str, cfg: NextDayConfig, synthetic: SyntheticConfig,
                      storage: StorageConfig | None = None) -> dict[str, int]:
    """Write ``<output>/part-*.parquet`` (day 2) from the day-1 catalog; returns the counts."""
    src = resolve(catalog, storage)
    target = resolve(output, storage)
    staged = staging_sibling(target)
    files = parquet_files(src)
    try:
        results = ray.get([_rewrite_file.remote(f, staged.child(f"part-{i:06d}.parquet"), cfg)
                           for i, f in enumerate(files)])
        added = _added_items(synthetic, cfg, staged)
        replace_dir(staged, target)
    except BaseException:
        delete_dir(staged)
        raise
    counts = {k: sum(r[k] for r in results) for k in ("kept", "removed", "changed")}
    counts["added"] = added
    log.info("next-day catalog at %s: %s", target.uri, counts)
    return counts


def _added_items(synthetic: SyntheticConfig, cfg: NextDayConfig, out: Location) -> int:
    """New items from the same cluster tree: indices num_items .. num_items + added - 1."""
    n_old = synthetic.num_items
    n_new = int(round(n_old * cfg.add_fraction))
    if n_new == 0:
        return 0
    grown = dataclasses.replace(synthetic, num_items=n_old + n_new)
    tree = build_tree(grown)
    first_id = grown.item_id_offset + n_old
    written = 0
    for chunk in range(n_old // grown.chunk_items, grown.num_item_chunks):
        table = item_chunk(grown, tree, chunk)
        table = table.filter(pc.greater_equal(table.column(ITEM_ID), first_id))
        if table.num_rows:
            write_table(table, out.child(f"part-new-{chunk:06d}.parquet"))
            written += table.num_rows
    return written
