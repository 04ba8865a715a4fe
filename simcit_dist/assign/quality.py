"""Catalog-level SID quality for the manifest: merged partition stats, a HitRate sample, drift."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from simcit_dist.assign.context import AssignContext
from simcit_dist.assign.resolve import AssignStats
from simcit_dist.data.parquet_io import read_dataset
from simcit_dist.data.schemas import ITEM_ID
from simcit_dist.sids.metrics import LevelUsage, embedding_hit_rate
from simcit_dist.tokenizer import load_artifact
from simcit_dist.tokenizer.inputs import arrow_to_batch


def catalog_metrics(stats: AssignStats, ctx: AssignContext) -> dict[str, float]:
    """Collision/Gini over the whole catalog (from the exchange's code groups, before suffixes),
    per-level utilization/perplexity, and HitRate@K of the full SID on a sample."""
    groups = stats.groups
    out: dict[str, float] = {"num_items": float(groups.num_items), "num_unique_codes": float(groups.num_unique),
                             "collision_rate": groups.collision_rate(), "max_per_code": float(groups.max_per_sid),
                             "gini": groups.gini(), "max_suffix": float(stats.max_suffix)}
    if stats.usage is not None:
        for level, (u, p) in enumerate(zip(stats.usage.utilization(), stats.usage.perplexity())):
            out[f"utilization_l{level}"] = float(u)
            out[f"perplexity_l{level}"] = float(p)
    if ctx.cfg.hit_rate_sample > ctx.cfg.hit_rate_k:
        out.update(_sample_hit_rate(ctx))
    return out


def _sample_hit_rate(ctx: AssignContext) -> dict[str, float]:
    """HitRate@K on the first ``hit_rate_sample`` catalog rows, neighbours within the sample."""
    tokenizer, _, _ = load_artifact(ctx.artifact)
    tokenizer.eval()
    sample = read_dataset(ctx.catalog, columns=[ITEM_ID, *ctx.modalities]).limit(ctx.cfg.hit_rate_sample)
    codes, embeds = [], []
    with torch.no_grad():
        for table in sample.iter_batches(batch_size=4096, batch_format="pyarrow"):
            batch = arrow_to_batch(table, ctx.modalities, with_partner=False)
            codes.append(tokenizer.encode(batch).numpy())
            embeds.append(np.nan_to_num(torch.cat([batch[m] for m in ctx.modalities], 1).numpy()))
    if not codes or sum(len(c) for c in codes) <= ctx.cfg.hit_rate_k:
        return {}
    c, e = np.concatenate(codes), np.concatenate(embeds)
    k = ctx.cfg.hit_rate_k
    return {f"hit_rate@{k}_p{p}": embedding_hit_rate(e, c, k, p, num_queries=min(1000, len(c)))
            for p in range(1, ctx.levels + 1)}


def usage_drift(previous_counts: Any, usage: LevelUsage) -> dict[str, float]:
    """Per level: total-variation distance between yesterday's and today's code distributions."""
    if not previous_counts:
        return {}
    prev = np.asarray(previous_counts, dtype=np.float64)
    cur = usage.counts.astype(np.float64)
    if prev.shape != cur.shape:
        return {}
    p = prev / np.maximum(prev.sum(1, keepdims=True), 1)
    q = cur / np.maximum(cur.sum(1, keepdims=True), 1)
    return {f"tv_distance_l{level}": float(0.5 * np.abs(p[level] - q[level]).sum()) for level in range(len(p))}
