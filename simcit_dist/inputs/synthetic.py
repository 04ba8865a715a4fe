"""Deterministic synthetic catalogs with real structure, at any size.

Items hang off the leaves of a hierarchical latent cluster tree, so a tokenizer that recovers
the hierarchy beats random codes measurably. Each modality is a different noisy linear
projection of the item's latent. Co-occurrence pairs join items of the same leaf (or a
sibling leaf). Users walk a cluster-level Markov chain (a fixed "successor" leaf per leaf,
plus stays and sibling moves), so a sequential recommender has real signal to learn.

Everything is generated in fixed-size *chunks*; chunk ``c`` draws from
``default_rng([seed, stream, c])``. A Ray task writes whole chunks, so the output is identical
whatever the number of tasks, and no process ever holds more than one chunk.

Item ``i`` (0-based index) has ``item_id = item_id_offset + i`` and leaf
``leaf_perm[i % num_leaves]``, so the items of a leaf are an arithmetic progression and a
partner or next item in a leaf is drawn in O(1) without any catalog in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from simcit_dist.data.schemas import INTERACTIONS_SCHEMA, PAIRS_SCHEMA, catalog_schema, embeddings_to_arrow

_TREE, _ITEMS, _PAIRS, _USERS = 0, 1, 2, 3  # independent random streams


@dataclass
class SyntheticConfig:
    num_items: int = 20_000
    modalities: dict[str, int] = field(default_factory=lambda: {"emb_text": 64, "emb_image": 96, "emb_cf": 32})
    latent_dim: int = 32
    branching: list[int] = field(default_factory=lambda: [8, 8, 4])  # children per level; leaves = product
    level_scales: list[float] = field(default_factory=lambda: [1.0, 0.45, 0.2])  # centre spread per level
    item_noise: float = 0.08  # item latent = leaf centre + item_noise * N(0, I)
    modality_noise: float = 0.15  # relative to the projected signal's scale
    item_id_offset: int = 1000
    pairs_per_item: float = 1.0  # expected co-occurrence pairs per item
    pair_same_leaf_prob: float = 0.8  # else a sibling leaf under the same parent
    num_users: int = 4000
    min_seq_len: int = 5
    mean_seq_len: int = 20
    successor_prob: float = 0.6  # next item from the leaf's fixed successor leaf
    stay_prob: float = 0.15  # next item from the same leaf
    sibling_prob: float = 0.15  # next item from a sibling leaf; the rest is uniform over leaves
    popularity_exponent: float = 2.0  # > 1 skews picks within a leaf towards its first items
    chunk_items: int = 65_536  # items per output file / per random-stream chunk
    chunk_users: int = 8_192
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_items < 1 or self.num_users < 0:
            raise ValueError("num_items must be >= 1 and num_users >= 0")
        if not self.modalities or any(d < 1 for d in self.modalities.values()):
            raise ValueError(f"modalities must map column names to dims >= 1, got {self.modalities}")
        if len(self.branching) != len(self.level_scales) or not self.branching:
            raise ValueError("branching and level_scales must be non-empty lists of the same length")
        if any(b < 1 for b in self.branching):
            raise ValueError(f"branching factors must be >= 1, got {self.branching}")
        if self.successor_prob + self.stay_prob + self.sibling_prob > 1.0:
            raise ValueError("successor_prob + stay_prob + sibling_prob must be <= 1")
        if self.min_seq_len < 2 or self.mean_seq_len < self.min_seq_len:
            raise ValueError("need 2 <= min_seq_len <= mean_seq_len")
        if self.chunk_items < 1 or self.chunk_users < 1:
            raise ValueError("chunk sizes must be >= 1")

    @property
    def num_leaves(self) -> int:
        return int(np.prod(self.branching))

    @property
    def num_item_chunks(self) -> int:
        return -(-self.num_items // self.chunk_items)

    @property
    def num_user_chunks(self) -> int:
        return -(-self.num_users // self.chunk_users)


@dataclass
class ClusterTree:
    """Leaf centres and the structure the generators need (small: one row per leaf)."""

    leaf_centres: np.ndarray  # (num_leaves, latent_dim)
    leaf_parent: np.ndarray  # (num_leaves,) index of the parent node at the second-to-last level
    leaf_perm: np.ndarray  # (num_leaves,) leaf of items with index % num_leaves == r
    leaf_first_index: np.ndarray  # (num_leaves,) inverse of leaf_perm: smallest item index in the leaf
    successor: np.ndarray  # (num_leaves,) the Markov chain's preferred next leaf
    projections: dict[str, np.ndarray]  # modality -> (latent_dim, dim)
    signal_scale: dict[str, float]


def build_tree(cfg: SyntheticConfig) -> ClusterTree:
    rng = np.random.default_rng([cfg.seed, _TREE])
    centres = np.zeros((1, cfg.latent_dim))
    for branch, scale in zip(cfg.branching, cfg.level_scales):
        offsets = rng.normal(0.0, scale, size=(centres.shape[0], branch, cfg.latent_dim))
        centres = (centres[:, None, :] + offsets).reshape(-1, cfg.latent_dim)
    n = cfg.num_leaves
    leaf_parent = np.arange(n) // cfg.branching[-1]
    leaf_perm = rng.permutation(n)
    leaf_first_index = np.empty(n, dtype=np.int64)
    leaf_first_index[leaf_perm] = np.arange(n)
    successor = rng.permutation(n)
    projections, scales = {}, {}
    for name, dim in cfg.modalities.items():
        w = rng.normal(0.0, 1.0 / np.sqrt(cfg.latent_dim), size=(cfg.latent_dim, dim))
        projections[name] = w
        scales[name] = float(np.sqrt((centres @ w).var(axis=0).mean()) + 1e-6)
    return ClusterTree(centres.astype(np.float32), leaf_parent, leaf_perm, leaf_first_index, successor,
                       projections, scales)


def leaf_of(cfg: SyntheticConfig, tree: ClusterTree, index: np.ndarray) -> np.ndarray:
    return tree.leaf_perm[index % cfg.num_leaves]


def _leaf_sizes(cfg: SyntheticConfig, tree: ClusterTree, leaves: np.ndarray) -> np.ndarray:
    first = tree.leaf_first_index[leaves]
    return np.maximum((cfg.num_items - first + cfg.num_leaves - 1) // cfg.num_leaves, 0)


def _pick_in_leaf(cfg: SyntheticConfig, tree: ClusterTree, leaves: np.ndarray, u: np.ndarray,
                  skew: float = 1.0) -> np.ndarray:
    """Item indices drawn from the given leaves; ``skew`` > 1 favours each leaf's first items."""
    sizes = _leaf_sizes(cfg, tree, leaves)
    empty = sizes == 0
    if empty.any():  # catalog smaller than the number of leaves: fall back to any item
        leaves = np.where(empty, tree.leaf_perm[np.zeros_like(leaves)], leaves)
        sizes = _leaf_sizes(cfg, tree, leaves)
    k = np.minimum((sizes * u**skew).astype(np.int64), sizes - 1)
    return tree.leaf_first_index[leaves] + k * cfg.num_leaves


def _sibling(cfg: SyntheticConfig, leaves: np.ndarray, u: np.ndarray) -> np.ndarray:
    b = cfg.branching[-1]
    return (leaves // b) * b + (u * b).astype(np.int64).clip(0, b - 1)


def item_chunk(cfg: SyntheticConfig, tree: ClusterTree, chunk: int) -> pa.Table:
    """Catalog rows of one chunk: ``item_id`` and one embedding column per modality."""
    start = chunk * cfg.chunk_items
    stop = min(start + cfg.chunk_items, cfg.num_items)
    rng = np.random.default_rng([cfg.seed, _ITEMS, chunk])
    index = np.arange(start, stop, dtype=np.int64)
    latent = tree.leaf_centres[leaf_of(cfg, tree, index)]
    latent = latent + cfg.item_noise * rng.standard_normal(latent.shape, dtype=np.float32)
    columns: dict[str, pa.Array] = {"item_id": pa.array(index + cfg.item_id_offset, pa.int64())}
    for name, w in tree.projections.items():
        signal = latent @ w.astype(np.float32)
        noise = rng.standard_normal(signal.shape, dtype=np.float32)
        columns[name] = embeddings_to_arrow(signal + cfg.modality_noise * tree.signal_scale[name] * noise)
    return pa.Table.from_pydict(columns, schema=catalog_schema(cfg.modalities))


def pair_chunk(cfg: SyntheticConfig, tree: ClusterTree, chunk: int) -> pa.Table:
    """Co-occurrence pairs whose first item lies in this item chunk."""
    start = chunk * cfg.chunk_items
    stop = min(start + cfg.chunk_items, cfg.num_items)
    rng = np.random.default_rng([cfg.seed, _PAIRS, chunk])
    counts = rng.poisson(cfg.pairs_per_item, size=stop - start)
    a = np.repeat(np.arange(start, stop, dtype=np.int64), counts)
    leaves = leaf_of(cfg, tree, a)
    same = rng.random(a.size) < cfg.pair_same_leaf_prob
    leaves = np.where(same, leaves, _sibling(cfg, leaves, rng.random(a.size)))
    b = _pick_in_leaf(cfg, tree, leaves, rng.random(a.size))
    keep = a != b
    off = cfg.item_id_offset
    return pa.Table.from_pydict(
        {"item_a": a[keep] + off, "item_b": b[keep] + off, "weight": np.ones(int(keep.sum()), np.float32)},
        schema=PAIRS_SCHEMA,
    )


def user_chunk(cfg: SyntheticConfig, tree: ClusterTree, chunk: int) -> pa.Table:
    """Interactions of one chunk of users: a cluster-level Markov walk per user."""
    start = chunk * cfg.chunk_users
    stop = min(start + cfg.chunk_users, cfg.num_users)
    rng = np.random.default_rng([cfg.seed, _USERS, chunk])
    n = stop - start
    extra = cfg.mean_seq_len - cfg.min_seq_len
    lengths = np.full(n, cfg.min_seq_len, dtype=np.int64)
    if extra > 0:
        lengths += rng.geometric(1.0 / (extra + 1), size=n) - 1
    leaves = rng.integers(0, cfg.num_leaves, size=n)
    steps = [leaves]
    for _ in range(int(lengths.max()) - 1):
        leaves = _markov_step(cfg, tree, leaves, rng)
        steps.append(leaves)
    walk = np.stack(steps, axis=1)  # (users, max_len) leaves
    valid = np.arange(walk.shape[1])[None, :] < lengths[:, None]
    leaf_seq = walk[valid]
    items = _pick_in_leaf(cfg, tree, leaf_seq, rng.random(leaf_seq.size), cfg.popularity_exponent)
    users = np.repeat(np.arange(start, stop, dtype=np.int64), lengths)
    gaps = rng.exponential(3600.0, size=valid.shape).astype(np.int64) + 1
    t0 = 1_700_000_000 + rng.integers(0, 86_400 * 30, size=(n, 1))
    times = (t0 + np.cumsum(gaps, axis=1))[valid]
    return pa.Table.from_pydict(
        {"user_id": users, "item_id": items + cfg.item_id_offset, "timestamp": times}, schema=INTERACTIONS_SCHEMA
    )


def _markov_step(cfg: SyntheticConfig, tree: ClusterTree, leaves: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(leaves.size)
    sibling = _sibling(cfg, leaves, rng.random(leaves.size))
    uniform = rng.integers(0, cfg.num_leaves, size=leaves.size)
    p1 = cfg.successor_prob
    p2 = p1 + cfg.stay_prob
    p3 = p2 + cfg.sibling_prob
    return np.select([u < p1, u < p2, u < p3], [tree.successor[leaves], leaves, sibling], uniform)
