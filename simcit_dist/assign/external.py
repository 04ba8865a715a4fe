"""Import SID tables made elsewhere, so any tokenizer can be compared in our recommender.

LETTER-style repositories publish JSON index files ``{"<item>": ["<a_12>", "<b_3>", "<c_7>"]}``:
one token per level, the letter naming the level and the number the code. Items that share all
codes get suffixes exactly as our own assignment gives them (order: item_id), and the table is
published as a normal SID version (manifest + LATEST), with the file's hash as "tokenizer hash".
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np
import pyarrow as pa

from simcit_dist.assign import publish as pub
from simcit_dist.assign.resolve import PENDING, assign_partition, stage_b_rows
from simcit_dist.data.parquet_io import write_table
from simcit_dist.sids.manifest import SidManifest
from simcit_dist.sids.metrics import LevelUsage
from simcit_dist.sids.table import SIDTableError, version_dir
from simcit_dist.storage import StorageConfig, read_bytes, resolve

_TOKEN = re.compile(r"^<([a-z])_(\d+)>$")


def parse_letter_index(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(item ids (N,), codes (N, L)) from a LETTER-style JSON index; clear errors name the item."""
    try:
        index: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SIDTableError(f"{source}: not valid JSON ({e})") from e
    if not isinstance(index, dict) or not index:
        raise SIDTableError(f"{source}: expected a non-empty object {{item: [tokens]}}")
    ids, rows = [], []
    levels = None
    for key, tokens in index.items():
        try:
            item = int(key)
        except ValueError as e:
            raise SIDTableError(f"{source}: item key {key!r} is not an integer item id") from e
        if not isinstance(tokens, list) or not tokens:
            raise SIDTableError(f"{source}: item {key}: expected a list of tokens like '<a_12>', got {tokens!r}")
        codes = []
        for level, token in enumerate(tokens):
            match = _TOKEN.match(str(token))
            if match is None or ord(match.group(1)) - ord("a") != level:
                raise SIDTableError(f"{source}: item {key}: token {level} is {token!r}, expected "
                                    f"'<{chr(ord('a') + level)}_N>'")
            codes.append(int(match.group(2)))
        if levels is None:
            levels = len(codes)
        elif len(codes) != levels:
            raise SIDTableError(f"{source}: item {key} has {len(codes)} tokens, others have {levels}")
        ids.append(item)
        rows.append(codes)
    return np.asarray(ids, np.int64), np.asarray(rows, np.int64)


def import_letter_index(index_uri: str, sid_root: str, storage: StorageConfig | None = None,
                        max_suffix: int = 1023) -> SidManifest:
    """Publish the JSON index at ``index_uri`` as a SID version under ``sid_root``; returns its manifest."""
    src = resolve(index_uri, storage)
    raw = read_bytes(src)
    ids, codes = parse_letter_index(raw, src.uri)
    if len(np.unique(ids)) != len(ids):
        raise SIDTableError(f"{src.uri}: repeated item ids")
    root = resolve(sid_root, storage)
    digest = hashlib.sha256(raw).hexdigest()
    version = pub.find_by_digest(root, digest) or pub.version_name(1, digest)
    done = pub.complete_manifest(root, version)
    if done is not None:
        return done
    k = int(codes.max()) + 1
    n, levels = codes.shape
    rows = stage_b_rows({"item_id": ids, "codes": codes, "dist": np.zeros(n), "status": np.full(n, PENDING, np.int8)},
                        n, levels)
    live, _, stats = assign_partition(rows, levels, max_suffix, codebook_size=k)
    write_table(live, version_dir(root, version).child("sids", "part-00000.parquet"))
    usage = stats.usage or LevelUsage.from_codes(codes, k)
    metrics = {"collision_rate": stats.groups.collision_rate(), "gini": stats.groups.gini(),
               "num_unique_codes": float(stats.groups.num_unique), "max_per_code": float(stats.groups.max_per_sid)}
    for level, p in enumerate(usage.perplexity()):
        metrics[f"perplexity_l{level}"] = float(p)
    manifest = SidManifest(version=version, seq=1, num_levels=levels, codebook_size=k,
                           max_suffix=int(stats.max_suffix), tokenizer=src.uri, tokenizer_hash=digest,
                           counts={"items": n}, metrics=metrics, code_counts=usage.counts.tolist(),
                           diff={"added": n}, source={"format": "LETTER-style JSON index", "uri": src.uri})
    pub.publish(root, manifest)
    return manifest


def export_letter_index(table: pa.Table, levels: int) -> dict[str, list[str]]:
    """The inverse (for tests and for handing our SIDs to LETTER-style code)."""
    cols = [table.column(f"c{i + 1}").to_pylist() for i in range(levels)]
    return {str(item): [f"<{chr(ord('a') + lv)}_{cols[lv][r]}>" for lv in range(levels)]
            for r, item in enumerate(table.column("item_id").to_pylist())}
