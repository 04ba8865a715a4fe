"""SID quality metrics as mergeable partial aggregates.

At catalog scale each Ray task builds a small partial and the driver merges them:

- :class:`LevelUsage`: per-level code counts (L, K) -> utilization and perplexity per level;
  partials from any split of the items merge by addition.
- :class:`SIDGroupStats`: a histogram {group size s: number of SIDs with s items} over groups of
  items sharing a full SID -> collision rate, unique SIDs, max items per SID, Gini. Partials
  merge by adding histograms, which is only valid when each SID's whole group lies in one
  partial (e.g. the partitions of a group-by on the SID): a SID split across item blocks must be
  counted first (:func:`sid_keys` + a group-by), then histogrammed.
- :func:`embedding_hit_rate`: on a sample, how many of an item's nearest neighbours in the
  input embedding space share its SID prefix.

:func:`sid_metrics` computes everything in one process (held-out samples, tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _check_codes(codes: np.ndarray, codebook_size: int | None = None) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be an integer array of shape (N, L), got {codes.dtype} {codes.shape}")
    if codebook_size is not None and codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}), got range [{codes.min()}, {codes.max()}]")
    return codes.astype(np.int64, copy=False)


@dataclass
class LevelUsage:
    """Code usage counts per level: ``counts[l, k]`` items whose level-l code is k."""

    counts: np.ndarray  # (L, K) int64

    @classmethod
    def empty(cls, num_levels: int, codebook_size: int) -> LevelUsage:
        return cls(np.zeros((num_levels, codebook_size), dtype=np.int64))

    @classmethod
    def from_codes(cls, codes: np.ndarray, codebook_size: int) -> LevelUsage:
        codes = _check_codes(codes, codebook_size)
        n_levels = codes.shape[1]
        flat = (codes + np.arange(n_levels) * codebook_size).ravel()  # one bincount for all levels
        counts = np.bincount(flat, minlength=n_levels * codebook_size).reshape(n_levels, codebook_size)
        return cls(counts.astype(np.int64))

    def merge(self, other: LevelUsage) -> LevelUsage:
        if self.counts.shape != other.counts.shape:
            raise ValueError(f"cannot merge LevelUsage of shapes {self.counts.shape} and {other.counts.shape}")
        return LevelUsage(self.counts + other.counts)

    @property
    def num_items(self) -> int:
        return int(self.counts[0].sum()) if self.counts.size else 0

    def utilization(self) -> np.ndarray:
        """(L,) fraction of the K codewords used by at least one item."""
        return (self.counts > 0).mean(axis=1)

    def perplexity(self) -> np.ndarray:
        """(L,) exp(H) with H = -sum_k p_k ln p_k over used codes, p_k = counts / items.

        1 when one code takes every item, K when usage is uniform (the effective codebook size).
        """
        totals = self.counts.sum(axis=1, keepdims=True).astype(np.float64)
        p = np.divide(self.counts, totals, out=np.zeros(self.counts.shape), where=totals > 0)
        logp = np.log(p, out=np.zeros_like(p), where=p > 0)  # 0 ln 0 = 0
        return np.exp(-(p * logp).sum(axis=1))


def sid_keys(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """One int64 key per full SID (mixed radix K), for group-bys; needs K**L < 2**63."""
    codes = _check_codes(codes, codebook_size)
    n_levels = codes.shape[1]
    if n_levels * math.log2(codebook_size) >= 63:
        raise ValueError(f"codebook_size**num_levels = {codebook_size}**{n_levels} does not fit an int64 key")
    keys = np.zeros(codes.shape[0], dtype=np.int64)
    for level in range(n_levels):
        keys = keys * codebook_size + codes[:, level]
    return keys


@dataclass
class SIDGroupStats:
    """Histogram of SID group sizes: ``freq[i]`` SIDs hold exactly ``sizes[i]`` items."""

    sizes: np.ndarray  # (G,) int64, ascending, each >= 1
    freq: np.ndarray  # (G,) int64, each >= 1

    @classmethod
    def empty(cls) -> SIDGroupStats:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    @classmethod
    def from_group_sizes(cls, group_sizes: np.ndarray) -> SIDGroupStats:
        """From the item count of each occupied SID (e.g. a group-by's ``count()`` column)."""
        group_sizes = np.asarray(group_sizes, dtype=np.int64)
        if group_sizes.size and group_sizes.min() < 1:
            raise ValueError("group sizes must be >= 1 (only occupied SIDs are counted)")
        sizes, freq = np.unique(group_sizes, return_counts=True)
        return cls(sizes.astype(np.int64), freq.astype(np.int64))

    @classmethod
    def from_codes(cls, codes: np.ndarray, codebook_size: int) -> SIDGroupStats:
        """From full codes (N, L) of *all* items of the SIDs concerned."""
        _, counts = np.unique(sid_keys(codes, codebook_size), return_counts=True)
        return cls.from_group_sizes(counts)

    def merge(self, other: SIDGroupStats) -> SIDGroupStats:
        """Add histograms of disjoint sets of SIDs."""
        sizes = np.concatenate([self.sizes, other.sizes])
        freq = np.concatenate([self.freq, other.freq])
        uniq, inverse = np.unique(sizes, return_inverse=True)
        return SIDGroupStats(uniq.astype(np.int64), np.bincount(inverse, weights=freq).astype(np.int64))

    @property
    def num_items(self) -> int:
        return int((self.sizes * self.freq).sum())

    @property
    def num_unique(self) -> int:
        return int(self.freq.sum())

    @property
    def max_per_sid(self) -> int:
        return int(self.sizes.max()) if self.sizes.size else 0

    def collision_rate(self) -> float:
        """Fraction of items that share their full SID with at least one other item."""
        n = self.num_items
        return float((self.sizes * self.freq)[self.sizes >= 2].sum() / n) if n else 0.0

    def duplicate_rate(self) -> float:
        """1 - unique SIDs / items: the share of items that need a disambiguating suffix."""
        n = self.num_items
        return 1.0 - self.num_unique / n if n else 0.0

    def gini(self) -> float:
        """Gini coefficient of items per occupied SID, as in FORGE's ``calculate_gini.py``.

        With the N occupied SIDs' counts x sorted ascending (x_1 <= ... <= x_N) and rank
        r_i = N + 1 - i (the largest count has rank 1):

            G = (N + 1) / N - 2 * sum_i r_i x_i / (N * sum_i x_i)

        0 when every SID holds the same number of items, towards 1 when a few hold most.
        Computed in closed form per histogram bin, so it costs O(number of distinct sizes).
        """
        n = self.num_unique
        total = self.num_items
        if n == 0 or total == 0:
            return 0.0
        f = self.freq.astype(np.float64)
        before = np.concatenate([[0.0], np.cumsum(f)[:-1]])  # SIDs with smaller counts
        # Bin j covers ascending positions before+1 .. before+f; sum of their ranks N+1-i:
        rank_sum = f * (n + 1) - (f * (2 * before + f + 1)) / 2
        weighted = float((self.sizes.astype(np.float64) * rank_sum).sum())
        return (n + 1) / n - 2.0 * weighted / (n * total)


def _knn(embeddings: np.ndarray, query_rows: np.ndarray, k: int, metric: str, chunk: int = 512) -> np.ndarray:
    """(Q, k) indices of each query row's k nearest rows of ``embeddings`` other than itself."""
    import torch  # here, not at module level: SID assignment's stage tasks import this module without torch

    emb = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    queries = torch.from_numpy(query_rows)
    if metric == "cosine":
        emb = torch.nn.functional.normalize(emb, dim=1)
    elif metric != "l2":
        raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}")
    sq = emb.pow(2).sum(1)
    out = []
    for start in range(0, queries.numel(), chunk):
        q = queries[start:start + chunk]
        # Smaller is nearer: squared distance up to the query's own norm (a per-row constant).
        score = sq.unsqueeze(0) - 2.0 * emb[q] @ emb.t()  # (q, N)
        score[torch.arange(q.numel()), q] = float("inf")  # never its own neighbour
        out.append(torch.topk(score, k, dim=1, largest=False).indices)
    return torch.cat(out).numpy()


def embedding_hit_rate(embeddings: np.ndarray, codes: np.ndarray, k: int = 10, prefix_levels: int | None = None,
                       num_queries: int = 1000, metric: str = "cosine", seed: int = 0) -> float:
    """Mean over sampled query items of |kNN(q) with the same SID prefix| / k.

    kNN(q) are q's k nearest other items among all N rows of ``embeddings`` (N, d) in the input
    space; the prefix is the first ``prefix_levels`` codes (default: the full SID). Random codes
    score about k_eff / K**prefix_levels; a tokenizer that keeps neighbours together scores high.
    """
    codes = _check_codes(codes)
    n, n_levels = codes.shape
    prefix = n_levels if prefix_levels is None else prefix_levels
    if not 1 <= prefix <= n_levels:
        raise ValueError(f"prefix_levels must be in [1, {n_levels}], got {prefix_levels}")
    if embeddings.shape[0] != n or not 1 <= k < n:
        raise ValueError(f"need embeddings for the {n} coded items and 1 <= k < {n}, got "
                         f"{embeddings.shape[0]} rows and k={k}")
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n, size=min(num_queries, n), replace=False))
    neighbours = _knn(embeddings, queries, k, metric)  # (Q, k)
    same = (codes[neighbours, :prefix] == codes[queries, None, :prefix]).all(axis=2)  # (Q, k)
    return float(same.mean())


def sid_metrics(codes: np.ndarray, codebook_size: int, embeddings: np.ndarray | None = None, k: int = 10,
                num_queries: int = 1000, seed: int = 0) -> dict[str, float]:
    """Every SID metric of one set of codes (N, L); hit rates per prefix length when ``embeddings``."""
    codes = _check_codes(codes, codebook_size)
    groups = SIDGroupStats.from_codes(codes, codebook_size)
    usage = LevelUsage.from_codes(codes, codebook_size)
    out: dict[str, float] = {
        "num_items": float(groups.num_items),
        "num_unique": float(groups.num_unique),
        "collision_rate": groups.collision_rate(),
        "duplicate_rate": groups.duplicate_rate(),
        "max_per_sid": float(groups.max_per_sid),
        "gini": groups.gini(),
    }
    for level, (u, p) in enumerate(zip(usage.utilization(), usage.perplexity())):
        out[f"utilization_l{level}"] = float(u)
        out[f"perplexity_l{level}"] = float(p)
    if embeddings is not None:
        for prefix in range(1, codes.shape[1] + 1):
            out[f"hit_rate@{k}_p{prefix}"] = embedding_hit_rate(embeddings, codes, k, prefix, num_queries,
                                                                seed=seed)
    return out
