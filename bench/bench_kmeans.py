"""Our k-means (``tokenizer/kmeans.py``: RQ-KMeans fits and codebook initialisation) against
faiss-cpu's k-means, the field's library, on the same rows, k, iterations and threads.

Two shapes: RQ-KMeans' first level on an AL-GR-like catalog (512-d, k = 256) and the AL-GR
preset's k = 8,192 on a sample. Every side gets the same float32 rows; faiss is told to use all of
them (no subsampling) and the same number of threads as torch. The objective of each is computed
by the same code (mean squared distance to the nearest centre). Three of ours:

- ``ours``: what RQ-KMeans runs by default (``init: auto``, ``backend: auto``): k-means++ seeds
  (k <= 1,024) or faiss's random seeding (above), then faiss's Lloyd iterations;
- ``torch``: the torch reference kernels with the same seeding (k-means++ at k = 256, random rows
  at k = 8,192; k-means++ there took 750 s of 860 s on 2 cores: bench/results history);

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
        "ours_seconds", "torch_seconds", "faiss_seconds", "time_ratio", "objective_ratio",
        "torch_time_ratio", "torch_objective_ratio")),
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


def ours(x: Any, k: int, iters: int, backend: str) -> tuple[float, Any]:
    """RQ-KMeans' call with its default init (``auto``) on the given backend."""
    import torch

    from simcit_dist.tokenizer import kmeans as km
    from simcit_dist.tokenizer.config import RQKMeansConfig

    start = time.perf_counter()
    centres = km.kmeans(x, k, iters, torch.Generator().manual_seed(0), RQKMeansConfig().init, backend=backend)
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
        t_ours, c_ours = ours(x, k, iters, "auto")
        t_torch, c_torch = ours(x, k, iters, "torch")
        obj = {"faiss": objective(x, c_faiss), "ours": objective(x, c_ours), "torch": objective(x, c_torch)}
        res.add(f"ours_seconds_{case}", t_ours, "s", note=f"{n:,} x {x.shape[1]}, k={k}, {iters} iterations; "
                f"RQ-KMeans' default (init auto, backend auto)")
        res.add(f"torch_seconds_{case}", t_torch, "s", note="the torch reference kernels, same seeding")
        res.add(f"faiss_seconds_{case}", t_faiss, "s")
        res.add(f"time_ratio_{case}", ratio(t_ours, t_faiss), "ratio", ("<=", 1.25), note="ours / faiss")
        res.add(f"objective_ratio_{case}", ratio(obj["ours"], obj["faiss"]), "ratio", ("<=", 1.0),
                note="mean squared distance, ours / faiss")
        res.add(f"torch_time_ratio_{case}", ratio(t_torch, t_faiss), "ratio", note="torch kernels / faiss")
        res.add(f"torch_objective_ratio_{case}", ratio(obj["torch"], obj["faiss"]), "ratio")
        res.details[case] = {"rows": n, "dim": int(x.shape[1]), "k": k, "iters": iters, "threads": threads,
                             "seconds": {"ours": t_ours, "torch": t_torch, "faiss": t_faiss},
                             "objective": obj}
    return res


if __name__ == "__main__":
    module_main(NAME, TITLE, FIGURES, run, needs_ray=True)
