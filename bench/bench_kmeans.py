"""Our torch k-means (``tokenizer/kmeans.py``: RQ-KMeans fits and codebook initialisation) against
faiss-cpu's k-means, the field's library, on the same rows, k, iterations and threads.

Two shapes: RQ-KMeans' first level on an AL-GR-like catalog (512-d, k = 256) and the AL-GR
preset's k = 8,192 on a sample. Both sides get the same float32 rows; faiss is told to use all of
them (no subsampling) and the same number of threads as torch. The objective of both is computed
by the same code (mean squared distance to the nearest centre). Ours runs as RQ-KMeans runs it
(k-means++ seeding on at most 64 k rows, then Lloyd) and also with random seeding, as faiss seeds.

Targets (issue 26): ours within 1.25x of faiss's time, at an objective no worse (ratio <= 1.0).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from bench.common import BenchContext, BenchResult, algr_like, module_main, ratio, synthetic_dataset

NAME = "kmeans"
TITLE = "k-means: ours (torch) vs faiss-cpu, same rows, k, iterations and threads"
CASES = ("k256", "k8192")
FIGURES = [
    *(f"{what}_{case}" for case in CASES for what in (
        "ours_seconds", "ours_random_init_seconds", "faiss_seconds", "time_ratio", "objective_ratio",
        "random_init_time_ratio", "random_init_objective_ratio")),
]


def load_rows(ctx: BenchContext, n: int) -> np.ndarray:
    """(n, 512) float32 embeddings of an AL-GR-like catalog (the pair-view benchmark's data)."""
    from simcit_dist.data.parquet_io import read_table
    from simcit_dist.data.schemas import arrow_to_embeddings
    from simcit_dist.storage import resolve

    data = synthetic_dataset(ctx.data / f"algr-{n}", algr_like(n), with_pairs=True)
    table = read_table(resolve(str(data / "catalog")), columns=["emb"])
    return np.ascontiguousarray(arrow_to_embeddings(table.column("emb")), dtype=np.float32)


def objective(x: Any, centres: Any) -> float:
    from simcit_dist.tokenizer import kmeans as km

    return float(km.nearest(x, centres)[1].double().mean())


def ours(x: Any, k: int, iters: int, init: str) -> tuple[float, Any]:
    import torch

    from simcit_dist.tokenizer import kmeans as km

    start = time.perf_counter()
    centres = km.kmeans(x, k, iters, torch.Generator().manual_seed(0), init)
    return time.perf_counter() - start, centres


def faiss_kmeans(x: np.ndarray, k: int, iters: int, threads: int) -> tuple[float, Any]:
    import faiss
    import torch

    faiss.omp_set_num_threads(threads)
    km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=0, verbose=False, spherical=False,
                      max_points_per_centroid=math.ceil(x.shape[0] / k) + 1)  # every row, as ours
    start = time.perf_counter()
    km.train(x)
    return time.perf_counter() - start, torch.from_numpy(np.array(km.centroids, dtype=np.float32))


def run(ctx: BenchContext) -> BenchResult:
    import torch

    res = BenchResult()
    threads = torch.get_num_threads()
    shapes = {"k256": ctx.pick((20_000, 64, 5), (1_000_000, 256, 20)),
              "k8192": ctx.pick((20_000, 512, 3), (200_000, 8192, 10))}
    for case, (n, k, iters) in shapes.items():
        rows = load_rows(ctx, n)
        x = torch.from_numpy(rows)
        t_faiss, c_faiss = faiss_kmeans(rows, k, iters, threads)
        t_ours, c_ours = ours(x, k, iters, "kmeans++")
        t_rand, c_rand = ours(x, k, iters, "random")
        obj = {"faiss": objective(x, c_faiss), "ours": objective(x, c_ours), "ours_random_init": objective(x, c_rand)}
        res.add(f"ours_seconds_{case}", t_ours, "s", note=f"{n:,} x {x.shape[1]}, k={k}, {iters} iterations")
        res.add(f"ours_random_init_seconds_{case}", t_rand, "s")
        res.add(f"faiss_seconds_{case}", t_faiss, "s")
        res.add(f"time_ratio_{case}", ratio(t_ours, t_faiss), "ratio", ("<=", 1.25), note="ours / faiss")
        res.add(f"objective_ratio_{case}", ratio(obj["ours"], obj["faiss"]), "ratio", ("<=", 1.0),
                note="mean squared distance, ours / faiss")
        res.add(f"random_init_time_ratio_{case}", ratio(t_rand, t_faiss), "ratio", note="ours, random seeding")
        res.add(f"random_init_objective_ratio_{case}", ratio(obj["ours_random_init"], obj["faiss"]), "ratio")
        res.details[case] = {"rows": n, "dim": int(x.shape[1]), "k": k, "iters": iters, "threads": threads,
                             "seconds": {"ours": t_ours, "ours_random_init": t_rand, "faiss": t_faiss},
                             "objective": obj}
    return res


if __name__ == "__main__":
    module_main(NAME, TITLE, FIGURES, run, needs_ray=True)
