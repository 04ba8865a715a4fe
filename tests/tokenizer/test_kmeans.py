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


def test_auto_init_is_kmeans_pp_up_to_the_limit_then_random() -> None:
    assert km.resolve_init("auto", km.KMEANS_PP_MAX_K) == "kmeans++"
    assert km.resolve_init("auto", km.KMEANS_PP_MAX_K + 1) == "random"
    assert km.resolve_init("random", 4) == "random"
    with pytest.raises(ValueError, match="k-means init must be"):
        km.resolve_init("greedy", 4)


faiss = pytest.importorskip("faiss", reason="faiss-cpu is not installed (the faiss backend's tests need it)")


def test_faiss_lloyd_equals_the_torch_reference_from_the_same_seeds() -> None:
    x, _, _ = _blobs(k=12, per=60, dim=8, spread=2.0, seed=3)  # overlapping blobs: Lloyd moves a lot
    start = km.kmeans_plus_plus(x, 12, torch.Generator().manual_seed(0))
    from simcit_dist.tokenizer import kmeans_faiss

    for iters in (1, 4):
        ref = km.lloyd(x, start, iters)
        got = kmeans_faiss.lloyd(x, 12, iters, seed=0, start=start)
        # the same iterations: the same partition, centres equal up to float summation order
        assert torch.equal(km.nearest(x, got)[0], km.nearest(x, ref)[0])
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-5)


def test_faiss_backend_is_deterministic_and_as_good_as_torch() -> None:
    x, _, _ = _blobs(k=20, per=100, dim=16, spread=3.0, seed=5)
    runs = {name: km.kmeans(x, 32, 10, torch.Generator().manual_seed(1), "auto", backend=name)
            for name in ("faiss", "torch")}
    again = km.kmeans(x, 32, 10, torch.Generator().manual_seed(1), "auto", backend="faiss")
    assert torch.equal(runs["faiss"], again) and runs["faiss"].shape == (32, 16)
    obj = {name: float(km.nearest(x, c)[1].mean()) for name, c in runs.items()}
    assert obj["faiss"] <= obj["torch"] * 1.05, obj
    # random seeding is faiss's own, from a seed drawn from the generator
    r = km.kmeans(x, 32, 10, torch.Generator().manual_seed(1), "random", backend="faiss")
    assert float(km.nearest(x, r)[1].mean()) <= obj["torch"] * 1.2


def test_auto_backend_falls_back_to_torch_where_faiss_cannot_run() -> None:
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    assert km.uses_faiss("auto", x, 8) and not km.uses_faiss("torch", x, 8)
    assert not km.uses_faiss("auto", x, 64)  # fewer rows than centres
    assert not km.uses_faiss("auto", x, 8, minibatch_size=16)  # mini-batch k-means is ours
    with pytest.raises(ValueError, match="needs at least k rows|at least k rows"):
        km.kmeans(x, 64, 3, torch.Generator().manual_seed(0), backend="faiss")
    with pytest.raises(ValueError, match="backend must be"):
        km.uses_faiss("sklearn", x, 8)
    assert km.kmeans(x, 64, 3, torch.Generator().manual_seed(0), backend="auto").shape == (64, 3)
