"""Pair views at scale: the full view (every item) against a 5 % sample of anchors, built side by side
on the same AL-GR-shaped catalog, at two catalog sizes.

A sampled view must read and shuffle only the rows it needs: the sampled anchors and their
partners (issue 26; the 10M run once spent 528 s of a 1,010 s tokenizer stage joining the whole
20.6 GB catalog for a 5 % view). Reported per catalog item: seconds of the build and bytes written
to the exchange (both rounds), and the catalog rows that went through it.

Target: the 5 % view costs <= 15 % of the full view's seconds at the larger size.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from bench.common import BenchContext, BenchResult, algr_like, module_main, ratio, synthetic_dataset

NAME = "pair_views"
TITLE = "Pair views: a 5 % anchor sample against the full view (seconds and bytes shuffled per item)"
SIZE_NAMES = ("small", "large")
SAMPLE = 0.05
FIGURES = [
    *(f"{what}_{view}_{size}" for size in SIZE_NAMES for view in ("full", "sampled")
      for what in ("us_per_item", "shuffled_bytes_per_item", "catalog_rows_shuffled_fraction")),
    *(f"sampled_cost_fraction_{size}" for size in SIZE_NAMES),
    *(f"sampled_bytes_fraction_{size}" for size in SIZE_NAMES),
]


def build(ctx: BenchContext, data: Any, fraction: float, partitions: int) -> dict[str, Any]:
    from simcit_dist.storage import resolve
    from simcit_dist.tokenizer_training.pair_views import build_pair_views

    out = ctx.work / f"views-{fraction:g}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    built = build_pair_views(resolve(str(data / "catalog")), resolve(str(data / "pairs")), ["emb"],
                             resolve(str(out)), partitions, fraction)
    seconds = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "rows": built.rows, "shuffled_bytes": built.shuffled_bytes,
            "catalog_rows_shuffled": built.catalog_rows_shuffled}


def run(ctx: BenchContext) -> BenchResult:
    res = BenchResult()
    sizes = ctx.pick((5_000, 20_000), (250_000, 1_000_000))
    partitions = ctx.pick(2, 16)
    for size, n in zip(SIZE_NAMES, sizes):
        data = synthetic_dataset(ctx.data / f"algr-{n}", algr_like(n), with_pairs=True)
        runs = {"full": build(ctx, data, 1.0, partitions), "sampled": build(ctx, data, SAMPLE, partitions)}
        for view, r in runs.items():
            res.add(f"us_per_item_{view}_{size}", 1e6 * r["seconds"] / n, "us/item", note=f"{n:,} items")
            res.add(f"shuffled_bytes_per_item_{view}_{size}", r["shuffled_bytes"] / n, "B/item")
            res.add(f"catalog_rows_shuffled_fraction_{view}_{size}", r["catalog_rows_shuffled"] / n, "ratio")
        target = (("<=", 0.15) if size == "large" else None)
        res.add(f"sampled_cost_fraction_{size}", ratio(runs["sampled"]["seconds"], runs["full"]["seconds"]),
                "ratio", target, note=f"{SAMPLE:.0%} view seconds / full view seconds")
        res.add(f"sampled_bytes_fraction_{size}",
                ratio(runs["sampled"]["shuffled_bytes"], runs["full"]["shuffled_bytes"]), "ratio")
        res.details[size] = {"items": n, "partitions": partitions, **runs}
    return res


if __name__ == "__main__":
    module_main(NAME, TITLE, FIGURES, run)
