"""Write a synthetic dataset (catalog, pairs, interactions) with parallel Ray tasks.

Each task writes whole chunks (one bounded Parquet file per chunk and table), so 10M+ items
never sit in one process; output goes to a staging prefix and replaces the target only when
every task succeeded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import ray

from simcit_dist.config_loader import to_dict
from simcit_dist.data.parquet_io import write_table
from simcit_dist.inputs.synthetic import SyntheticConfig, build_tree, item_chunk, pair_chunk, user_chunk
from simcit_dist.storage import (
    Location,
    StorageConfig,
    delete_dir,
    replace_dir,
    resolve,
    staging_sibling,
    write_json,
)

log = logging.getLogger(__name__)


@dataclass
class GenerateResult:
    output: str
    num_items: int
    num_pairs: int
    num_interactions: int
    num_files: int
    seconds: float


@ray.remote
def _write_chunks(cfg: SyntheticConfig, kind: str, chunks: list[int], out: Location) -> int:
    tree = build_tree(cfg)
    make = {"catalog": item_chunk, "pairs": pair_chunk, "interactions": user_chunk}[kind]
    rows = 0
    for c in chunks:
        table = make(cfg, tree, c)
        write_table(table, out.child(kind, f"part-{c:06d}.parquet"))
        rows += table.num_rows
    return rows


def _split(chunks: list[int], parts: int) -> list[list[int]]:
    parts = max(1, min(parts, len(chunks)))
    return [chunks[i::parts] for i in range(parts)] if chunks else []


def generate_synthetic(cfg: SyntheticConfig, output: str, storage: StorageConfig | None = None,
                       num_tasks: int = 8, with_pairs: bool = True, with_interactions: bool = True) -> GenerateResult:
    """Generate ``<output>/{catalog,pairs,interactions}/part-*.parquet`` and ``dataset.json``."""
    start = time.time()
    target = resolve(output, storage)
    staged = staging_sibling(target)
    jobs: dict[str, list[int]] = {"catalog": list(range(cfg.num_item_chunks))}
    if with_pairs:
        jobs["pairs"] = list(range(cfg.num_item_chunks))
    if with_interactions and cfg.num_users > 0:
        jobs["interactions"] = list(range(cfg.num_user_chunks))
    refs = {kind: [_write_chunks.remote(cfg, kind, part, staged) for part in _split(chunks, num_tasks)]
            for kind, chunks in jobs.items()}
    try:
        counts = {kind: sum(ray.get(r)) for kind, r in refs.items()}
    except Exception:
        delete_dir(staged)
        raise
    result = GenerateResult(target.uri, counts["catalog"], counts.get("pairs", 0), counts.get("interactions", 0),
                            sum(len(c) for c in jobs.values()), time.time() - start)
    write_json(staged.child("dataset.json"), {"generator": "synthetic", "config": to_dict(cfg), **to_dict(result)})
    replace_dir(staged, target)
    log.info("wrote %s items, %s pairs, %s interactions to %s in %.1fs", result.num_items, result.num_pairs,
             result.num_interactions, target.uri, result.seconds)
    return result
