from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from simcit_dist.data.parquet_io import read_table
from simcit_dist.data.schemas import arrow_to_embeddings, embedding_columns
from simcit_dist.inputs.generate import generate_synthetic
from simcit_dist.inputs.synthetic import SyntheticConfig, build_tree, item_chunk, leaf_of, user_chunk
from simcit_dist.storage import list_files, resolve

SMALL = SyntheticConfig(num_items=3000, num_users=300, chunk_items=700, chunk_users=100, branching=[4, 4],
                        level_scales=[1.0, 0.4], modalities={"emb_a": 8, "emb_b": 12})


def _digest(root: str) -> dict[str, str]:
    return {f.uri.rsplit("/", 2)[-2] + "/" + f.uri.rsplit("/", 1)[-1]: hashlib.sha256(open(f.path, "rb").read()).hexdigest()
            for f in list_files(resolve(root), suffix=".parquet")}


def test_same_seed_same_bytes_whatever_the_task_count(tmp_path, ray_local) -> None:
    generate_synthetic(SMALL, str(tmp_path / "a"), num_tasks=1)
    generate_synthetic(SMALL, str(tmp_path / "b"), num_tasks=3)
    a, b = _digest(str(tmp_path / "a")), _digest(str(tmp_path / "b"))
    assert a == b and len(a) == 5 + 5 + 3
    catalog = read_table(resolve(str(tmp_path / "a" / "catalog")))
    assert catalog.num_rows == 3000
    assert embedding_columns(catalog.schema) == {"emb_a": 8, "emb_b": 12}
    ids = catalog.column("item_id").to_numpy()
    assert np.array_equal(ids, np.arange(3000) + SMALL.item_id_offset)
    other = SyntheticConfig(**{**SMALL.__dict__, "seed": 1})
    generate_synthetic(other, str(tmp_path / "c"), num_tasks=2)
    assert _digest(str(tmp_path / "c")) != a


def test_modalities_carry_the_cluster_structure() -> None:
    cfg = SyntheticConfig(num_items=4000, branching=[4, 4], level_scales=[1.0, 0.4], modalities={"emb_a": 16})
    tree = build_tree(cfg)
    emb = arrow_to_embeddings(item_chunk(cfg, tree, 0).column("emb_a"))
    leaves = leaf_of(cfg, tree, np.arange(cfg.num_items))
    centroids = np.stack([emb[leaves == k].mean(0) for k in range(cfg.num_leaves)])
    nearest = ((emb[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    # nearest-centroid recovers the latent leaf far above chance (1/16)
    assert (nearest == leaves).mean() > 0.9


def test_interactions_follow_the_markov_chain() -> None:
    cfg = SyntheticConfig(num_items=5000, num_users=2000, branching=[4, 4], level_scales=[1.0, 0.4])
    tree = build_tree(cfg)
    t = user_chunk(cfg, tree, 0)
    users = t.column("user_id").to_numpy()
    items = t.column("item_id").to_numpy() - cfg.item_id_offset
    leaves = leaf_of(cfg, tree, items)
    same_user = users[1:] == users[:-1]
    hits = (tree.successor[leaves[:-1]] == leaves[1:])[same_user].mean()
    assert abs(hits - (cfg.successor_prob + (1 - cfg.successor_prob) / cfg.num_leaves)) < 0.05
    assert np.all(np.diff(t.column("timestamp").to_numpy())[same_user] > 0)
    assert np.bincount(users).min() >= cfg.min_seq_len


@pytest.mark.slow
def test_driver_memory_does_not_grow_with_num_items(tmp_path) -> None:
    """Peak RSS of the generating driver at 50k and 500k items stays within 10 %."""
    script = textwrap.dedent(
        """
        import resource, sys, ray
        from simcit_dist.inputs.generate import generate_synthetic
        from simcit_dist.inputs.synthetic import SyntheticConfig
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        cfg = SyntheticConfig(num_items=int(sys.argv[1]), num_users=1000, chunk_items=25_000,
                              modalities={"emb": 128})
        generate_synthetic(cfg, sys.argv[2], num_tasks=2)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """
    )
    peaks = []
    for n in (50_000, 500_000):
        out = subprocess.run([sys.executable, "-c", script, str(n), str(tmp_path / f"n{n}")],
                             capture_output=True, text=True, check=True)
        peaks.append(int(out.stdout.strip().splitlines()[-1]))
    assert peaks[1] < peaks[0] * 1.10, peaks
