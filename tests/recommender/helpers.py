"""Fixtures for recommender tests: SID tables in the published layout, synthetic interactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from simcit_dist.data.parquet_io import write_table
from simcit_dist.inputs.synthetic import SyntheticConfig, build_tree, leaf_of, user_chunk
from simcit_dist.sids.table import code_columns, sid_schema, sid_strings
from simcit_dist.storage import Location, write_json, write_text


def write_sid_table(root: Location, item_ids: np.ndarray, codes: np.ndarray, suffix: np.ndarray,
                    codebook_size: int, version: str = "v1", files: int = 1) -> None:
    """Publish ``<root>/versions/<version>/{manifest.json,sids/part-*.parquet}`` and ``LATEST``."""
    levels = codes.shape[1]
    columns = {"item_id": pa.array(item_ids, pa.int64())}
    columns.update({c: pa.array(codes[:, i], pa.int32()) for i, c in enumerate(code_columns(levels))})
    columns["suffix"] = pa.array(suffix, pa.int32())
    columns["sid"] = sid_strings(codes, suffix)
    table = pa.Table.from_pydict(columns, schema=sid_schema(levels))
    vdir = root.child("versions", version)
    for i, part in enumerate(np.array_split(np.arange(len(table)), files)):
        write_table(table.take(pa.array(part)), vdir.child("sids", f"part-{i:05d}.parquet"))
    write_json(vdir.child("manifest.json"), {"num_levels": levels, "codebook_size": codebook_size,
                                             "max_suffix": int(suffix.max()) if len(suffix) else 0,
                                             "version": version, "num_items": len(table)})
    write_text(root.child("LATEST"), version + "\n")


def small_synthetic(num_items: int = 96, num_users: int = 600, mean_seq_len: int = 12, seed: int = 0,
                    branching: tuple[int, ...] = (4, 4, 2)) -> SyntheticConfig:
    """32 leaves (branching 4x4x2), a few items per leaf, strong Markov signal."""
    return SyntheticConfig(num_items=num_items, modalities={"emb": 4}, latent_dim=8, branching=list(branching),
                           level_scales=[1.0, 0.5, 0.25][:len(branching)], num_users=num_users, min_seq_len=5,
                           mean_seq_len=mean_seq_len, successor_prob=0.7, stay_prob=0.1, sibling_prob=0.1,
                           chunk_users=256, seed=seed)


def leaf_sid_codes(cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground-truth hierarchical SIDs: leaf index digits (branching) + rank within the leaf as suffix."""
    tree = build_tree(cfg)
    index = np.arange(cfg.num_items, dtype=np.int64)
    leaf = leaf_of(cfg, tree, index)
    digits, rest = [], leaf.copy()
    for b in reversed(cfg.branching):
        digits.append(rest % b)
        rest //= b
    codes = np.stack(digits[::-1], axis=1)
    suffix = index // cfg.num_leaves  # items of a leaf are i, i + num_leaves, ...
    return index + cfg.item_id_offset, codes, suffix


def write_synthetic(tmp: Path | Location, cfg: SyntheticConfig, without_sid: int = 0) -> tuple[str, str]:
    """Interactions parquet + a leaf-code SID table under ``tmp``; returns (interactions, sid_root) URIs.

    The last ``without_sid`` catalog items are left out of the SID table (bad input).
    """
    from simcit_dist.storage import resolve

    base = tmp if isinstance(tmp, Location) else resolve(str(tmp))
    tree = build_tree(cfg)
    for c in range(cfg.num_user_chunks):
        write_table(user_chunk(cfg, tree, c), base.child("interactions", f"part-{c:05d}.parquet"))
    item_ids, codes, suffix = leaf_sid_codes(cfg)
    keep = slice(0, len(item_ids) - without_sid)
    write_sid_table(base.child("sids"), item_ids[keep], codes[keep], suffix[keep], codebook_size=max(cfg.branching))
    return base.child("interactions").uri, base.child("sids").uri
