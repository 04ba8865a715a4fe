from __future__ import annotations

import pytest
import torch

from simcit_dist.tokenizer import kmeans as km


def _blobs(k: int, per: int, dim: int, spread: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 5
    labels = torch.arange(k).repeat_interleave(per)
    x = centres[labels] + spread * torch.randn(k * per, dim, generator=g)
    return x, labels, centres


def test_nearest_matches_the_plain_distance_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(300, 7, generator=g), torch.randn(13, 7, generator=g)
    ref = km.squared_distances(x, c)
    monkeypatch.setattr(km, "_CHUNK_ELEMENTS", 13 * 64)  # several row chunks
    idx, d2 = km.nearest(x, c)
    assert torch.equal(idx, ref.argmin(1))
    torch.testing.assert_close(d2, ref.min(1).values, atol=1e-4, rtol=1e-4)
    # the plain reference itself, on a hand example
    assert km.squared_distances(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])).item() == 25.0


@pytest.mark.parametrize(("init", "minibatch"), [("kmeans++", 0), ("random", 0), ("kmeans++", 64)])
def test_kmeans_recovers_separated_blobs(init: str, minibatch: int) -> None:
    x, labels, _ = _blobs(k=6, per=50, dim=4, spread=0.1)
    centres = km.kmeans(x, 6, iters=10, generator=torch.Generator().manual_seed(0), init=init,
                        minibatch_size=minibatch)
    idx, d2 = km.nearest(x, centres)
    # every blob maps to one centre and every centre to one blob
    pairs = {(int(a), int(b)) for a, b in zip(labels, idx)}
    assert len(pairs) == 6 and len({b for _, b in pairs}) == 6
    assert d2.mean() < 0.1 * 4  # ~ spread^2 * dim


def test_kmeans_is_deterministic_given_the_seed() -> None:
    x, _, _ = _blobs(k=5, per=40, dim=3, spread=1.0)
    a = km.kmeans(x, 8, 5, torch.Generator().manual_seed(7))
    b = km.kmeans(x, 8, 5, torch.Generator().manual_seed(7))
    c = km.kmeans(x, 8, 5, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_lloyd_step_is_the_cluster_mean_and_reseeds_empty_clusters() -> None:
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0], [30.0]])
    out = km.lloyd(x, torch.tensor([[0.0], [10.0], [1000.0]]), iters=1)  # third centre starts empty
    assert out[:2].flatten().tolist() == [0.5, 17.0]  # 10, 11, 30 all nearer 10 than 1000
    assert out[2].item() == 30.0  # moved onto the worst-served point
    sums, counts = km.cluster_sums(x, torch.tensor([0, 0, 1, 1, 1]), 3)
    assert sums.flatten().tolist() == [1.0, 51.0, 0.0] and counts.tolist() == [2.0, 3.0, 0.0]


def test_fewer_points_than_centres_still_gives_k_centres() -> None:
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    centres = km.kmeans(x, 8, 3, torch.Generator().manual_seed(0))
    assert centres.shape == (8, 3) and torch.isfinite(centres).all()
