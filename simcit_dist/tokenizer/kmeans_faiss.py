"""Full-batch Lloyd iterations in faiss, behind :func:`simcit_dist.tokenizer.kmeans.kmeans`.

faiss is told to use every row (no subsampling: ``max_points_per_centroid`` above N / k) and
never to warn about few points per centre; it starts from the given centres (k-means++ seeds) or,
without them, from k random rows drawn with ``seed``. Empty clusters are split off large ones by
faiss's own rule. The result is deterministic given rows, seed and thread count.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def lloyd(x: Tensor, k: int, iters: int, seed: int, start: Tensor | None = None) -> Tensor:
    """``iters`` Lloyd iterations over the rows of ``x`` (N >= k, CPU) -> (k, D) centres (x's dtype)."""
    import faiss

    rows = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    n, dim = rows.shape
    if n < k:
        raise ValueError(f"faiss k-means needs at least k={k} rows, got {n}")
    km = faiss.Kmeans(dim, k, niter=iters, seed=seed, verbose=False, spherical=False,
                      max_points_per_centroid=n // k + 1, min_points_per_centroid=1)
    init = None if start is None else np.ascontiguousarray(start.detach().cpu().numpy(), dtype=np.float32)
    km.train(rows, init_centroids=init)
    return torch.from_numpy(np.array(km.centroids, dtype=np.float32).reshape(k, dim)).to(x.dtype)
