"""k-means: nearest-codeword search, k-means++ seeding, Lloyd and mini-batch updates.

Used to initialise codebooks (SimCIT, RQ-VAE) and to fit RQ-KMeans. The torch kernels are
vectorised over points and chunked over rows so a (N, K) distance matrix is never materialised
whole; they are the reference and run anywhere (CPU or GPU). Full-batch Lloyd on CPU rows can run
in faiss instead (``backend``): faiss's Lloyd was 1.2-1.6x faster than ours on 2 cores at the same
objective (``bench/bench_kmeans.py``), and RQ-KMeans fits are the one large k-means here.

Seeding: k-means++ is sequential in k (at k = 8,192 on 200k rows it took 750 s of an 860 s fit),
so ``init="auto"`` uses it up to :data:`KMEANS_PP_MAX_K` centres and random rows above, as faiss
does. Every random draw comes from a CPU ``torch.Generator`` (faiss gets a seed drawn from it), so
the result is a function of the data, the seed and, with faiss, the thread count.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from simcit_dist.tokenizer import kmeans_faiss

log = logging.getLogger(__name__)

_CHUNK_ELEMENTS = 1 << 24  # rows per chunk * K: a 64 MiB float32 distance block
KMEANS_PP_MAX_K = 1024  # init="auto": k-means++ up to this many centres, random rows above


def squared_distances(x: Tensor, c: Tensor) -> Tensor:
    """(N, D), (K, D) -> (N, K) squared Euclidean distances (the plain reference formula)."""
    return (x.unsqueeze(1) - c.unsqueeze(0)).pow(2).sum(-1)


def _chunk_rows(k: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(k, 1))


def nearest(x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Hard assignment: (index int64 (N,), squared distance (N,)) of each row's nearest codeword.

    ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the argmin does not need ||x||^2, which is added
    back only for the returned distance.
    """
    c_sq = c.pow(2).sum(1)  # (K,)
    idx_parts, d_parts = [], []
    step = _chunk_rows(c.shape[0])
    for start in range(0, x.shape[0], step):
        xs = x[start:start + step]
        partial = torch.addmm(c_sq.unsqueeze(0), xs, c.t(), alpha=-2.0)  # (n, K)
        d, idx = partial.min(dim=1)
        idx_parts.append(idx)
        d_parts.append((d + xs.pow(2).sum(1)).clamp_min(0.0))
    if not idx_parts:
        return x.new_zeros(0, dtype=torch.long), x.new_zeros(0)
    return torch.cat(idx_parts), torch.cat(d_parts)


def _uniform(n: int, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64)


def _sample_rows(n: int, k: int, generator: torch.Generator) -> Tensor:
    """k row indices: distinct when n >= k, else every row plus random repeats."""
    if n >= k:
        return torch.randperm(n, generator=generator)[:k]
    extra = torch.randint(0, n, (k - n,), generator=generator)
    return torch.cat([torch.arange(n), extra])


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii): each new centre drawn with probability
    proportional to its squared distance from the centres chosen so far. (k, D)."""
    n = x.shape[0]
    if n <= k:
        return random_init(x, k, generator)
    centres = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = int(torch.randint(0, n, (1,), generator=generator))
    centres[0] = x[first]
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2: one matrix-vector product per new centre reads x
    # once, where (x - c)^2 writes and re-reads an (N, D) temporary (3-4x the memory traffic).
    x_sq = x.pow(2).sum(1)
    d2 = _distances_to(x, x_sq, x[first])  # (N,) distance to the nearest chosen centre
    u = _uniform(k, generator).tolist()
    for j in range(1, k):
        cdf = torch.cumsum(d2.double(), 0)
        total = float(cdf[-1])
        if total <= 0:  # fewer distinct points than centres: repeat points
            pick = int(torch.randint(0, n, (1,), generator=generator))
        else:
            pick = min(int(torch.searchsorted(cdf, cdf.new_tensor([u[j] * total]))), n - 1)
        centres[j] = x[pick]
        d2 = torch.minimum(d2, _distances_to(x, x_sq, x[pick]))
    return centres


def _distances_to(x: Tensor, x_sq: Tensor, c: Tensor) -> Tensor:
    """(N,) squared distances of the rows of x to one point c (clamped at 0 against rounding)."""
    return torch.addmv(x_sq + c.dot(c), x, c, alpha=-2.0).clamp_min(0.0)


def random_init(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k random rows of x; with fewer rows than k, repeats get a small jitter so they can separate."""
    rows = _sample_rows(x.shape[0], k, generator).to(x.device)
    centres = x[rows].clone()
    if x.shape[0] < k:
        log.warning("k-means init: %d points for %d centres; repeated points are jittered", x.shape[0], k)
        scale = x.std(0, keepdim=True).clamp_min(1e-6) * 1e-2  # (1, D)
        noise = torch.randn(k - x.shape[0], x.shape[1], generator=generator).to(x.device, x.dtype)
        centres[x.shape[0]:] += noise * scale
    return centres


def cluster_sums(x: Tensor, idx: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(sums (k, D), counts (k,)) of the rows assigned to each cluster.

    On CUDA ``index_add_`` uses float atomics (order-dependent rounding), so there the sums are a
    one-hot matmul instead: deterministic, which keeps DDP ranks' codebooks bit-identical.
    """
    counts = torch.bincount(idx, minlength=k).to(x.dtype)
    if not x.is_cuda:
        return torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, idx, x), counts
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
    step = _chunk_rows(k)
    for start in range(0, x.shape[0], step):
        onehot = torch.nn.functional.one_hot(idx[start:start + step], k).to(x.dtype)  # (n, k)
        sums += onehot.t() @ x[start:start + step]
    return sums, counts


def _reseed_empty(centres: Tensor, counts: Tensor, x: Tensor, d2: Tensor) -> None:
    """Move empty clusters onto the points worst served by their centre (deterministic)."""
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel() == 0:
        return
    far = torch.topk(d2, min(empty.numel(), x.shape[0])).indices
    centres[empty[: far.numel()]] = x[far]


def lloyd(x: Tensor, centres: Tensor, iters: int) -> Tensor:
    """Full-batch Lloyd iterations from ``centres``; empty clusters are re-seeded each iteration."""
    k = centres.shape[0]
    centres = centres.clone()
    for _ in range(iters):
        idx, d2 = nearest(x, centres)
        sums, counts = cluster_sums(x, idx, k)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled].unsqueeze(1)
        _reseed_empty(centres, counts, x, d2)
    return centres


def minibatch_kmeans(x: Tensor, centres: Tensor, epochs: int, batch_size: int,
                     generator: torch.Generator) -> Tensor:
    """Mini-batch k-means (Sculley 2010): each centre is the running mean of every point ever
    assigned to it, so its step size decays as 1 / (points seen)."""
    k = centres.shape[0]
    centres = centres.clone()
    seen = torch.zeros(k, dtype=x.dtype, device=x.device)
    n = x.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n, batch_size):
            xb = x[order[start:start + batch_size]]
            idx, _ = nearest(xb, centres)
            sums, counts = cluster_sums(xb, idx, k)
            total = seen + counts
            hit = counts > 0
            centres[hit] = (centres[hit] * seen[hit].unsqueeze(1) + sums[hit]) / total[hit].unsqueeze(1)
            seen = total
    idx, d2 = nearest(x, centres)
    _reseed_empty(centres, torch.bincount(idx, minlength=k), x, d2)
    return centres


def resolve_init(init: str, k: int) -> str:
    """``auto`` -> ``kmeans++`` up to :data:`KMEANS_PP_MAX_K` centres, ``random`` above."""
    if init == "auto":
        return "kmeans++" if k <= KMEANS_PP_MAX_K else "random"
    if init not in ("kmeans++", "random"):
        raise ValueError(f"k-means init must be 'auto', 'kmeans++' or 'random', got {init!r}")
    return init


def uses_faiss(backend: str, x: Tensor, k: int, minibatch_size: int = 0) -> bool:
    """Whether :func:`kmeans` runs Lloyd in faiss: ``faiss`` or ``auto`` with faiss importable, on
    CPU rows, full batch, at least k rows (faiss refuses fewer)."""
    if backend not in ("auto", "torch", "faiss"):
        raise ValueError(f"k-means backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
    if backend == "torch":
        return False
    usable = not x.is_cuda and x.shape[0] >= k and not 0 < minibatch_size < x.shape[0]
    if backend == "faiss":
        if not kmeans_faiss.available():
            raise ValueError("k-means backend 'faiss' needs the faiss-cpu package (pip install faiss-cpu)")
        if not usable:
            raise ValueError(f"k-means backend 'faiss' runs full-batch Lloyd on CPU rows with at least k rows "
                             f"(got {x.shape[0]} rows on {x.device}, k={k}, minibatch_size={minibatch_size})")
        return True
    return usable and kmeans_faiss.available()


def kmeans(x: Tensor, k: int, iters: int, generator: torch.Generator, init: str = "kmeans++",
           minibatch_size: int = 0, backend: str = "torch") -> Tensor:
    """Cluster the rows of ``x`` (N, D) into ``k`` centres (k, D).

    k-means++ seeds from at most 64 * k points (its cost is sequential in k); Lloyd (or mini-batch
    epochs when ``0 < minibatch_size < N``) then runs on all of ``x``, in torch or, per
    :func:`uses_faiss`, in faiss (from the same seeds; random seeding is then faiss's own).
    """
    x = x.detach()
    init = resolve_init(init, k)
    faiss_lloyd = uses_faiss(backend, x, k, minibatch_size)
    if faiss_lloyd:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        start = kmeans_plus_plus(_seed_rows(x, k, generator), k, generator) if init == "kmeans++" else None
        return kmeans_faiss.lloyd(x, k, iters, seed, start)
    if init == "kmeans++":
        centres = kmeans_plus_plus(_seed_rows(x, k, generator), k, generator)
    else:
        centres = random_init(x, k, generator)
    if 0 < minibatch_size < x.shape[0]:
        return minibatch_kmeans(x, centres, iters, minibatch_size, generator)
    return lloyd(x, centres, iters)


def _seed_rows(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    if x.shape[0] > 64 * k:
        return x[torch.randperm(x.shape[0], generator=generator)[: 64 * k].to(x.device)]
    return x
