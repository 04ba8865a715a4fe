from __future__ import annotations

import numpy as np
import torch

from simcit_dist.sids.metrics import LevelUsage
from simcit_dist.tokenizer.quantizer import ResidualQuantizer
from simcit_dist.tokenizer.train_utils import batch_perplexity


def _hierarchical(n: int = 600, dim: int = 8, seed: int = 0) -> torch.Tensor:
    """Clusters of clusters of clusters: coarse offsets of scale 4, then 1, then 0.25, then noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, dim)
    for scale, branches in ((4.0, 4), (1.0, 4), (0.25, 4)):
        centres = torch.randn(branches, dim, generator=g) * scale
        x += centres[torch.randint(0, branches, (n,), generator=g)]
    return x + 0.05 * torch.randn(n, dim, generator=g)


def _quantizer(levels: int = 3, k: int = 8, dim: int = 8, shared: bool = False) -> ResidualQuantizer:
    torch.manual_seed(0)
    return ResidualQuantizer(levels, k, dim, shared=shared)


def test_soft_assignment_at_zero_temperature_is_the_hard_argmin() -> None:
    q = _quantizer()
    z = _hierarchical()
    q.init_kmeans(z[:300], iters=5, generator=torch.Generator().manual_seed(0))
    codes, z_hard = q.encode(z)
    soft = q.soft_quantize(z, temperature=1e-6, gumbel_scale=0.0)
    assert torch.equal(soft.codes, codes)
    torch.testing.assert_close(soft.z_hat, z_hard, atol=1e-5, rtol=0)
    torch.testing.assert_close(soft.residual, z - z_hard, atol=1e-5, rtol=0)
    # a warm temperature mixes codewords: the soft reconstruction differs from the hard one
    assert (q.soft_quantize(z, temperature=5.0, gumbel_scale=0.0).z_hat - z_hard).abs().max() > 0.1


def test_soft_quantize_is_the_plain_weighted_sum() -> None:
    q = _quantizer(levels=2, k=5, dim=3)
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    out = q.soft_quantize(z, temperature=0.7, gumbel_scale=0.0)
    r, z_hat = z.clone(), torch.zeros_like(z)
    for level in range(2):
        c = q.codebooks[level]
        d = ((r[:, None, :] - c[None]) ** 2).sum(-1)  # (B, K) squared distances
        w = torch.softmax(-d / 0.7, dim=1)
        r, z_hat = r - w @ c, z_hat + w @ c
    torch.testing.assert_close(out.z_hat, z_hat, atol=1e-5, rtol=1e-5)


def test_gumbel_noise_is_seeded_and_one_hot_at_low_temperature() -> None:
    q = _quantizer(levels=1, k=6, dim=4)
    z = torch.randn(200, 4, generator=torch.Generator().manual_seed(2))
    a = q.soft_quantize(z, 1e-6, gumbel_scale=1.0, generator=torch.Generator().manual_seed(5))
    b = q.soft_quantize(z, 1e-6, gumbel_scale=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.z_hat, b.z_hat)
    # one-hot: every reconstruction is exactly one codeword, but noise moves some off the argmin
    dist = ((a.z_hat[:, None, :] - q.codebooks[0][None]) ** 2).sum(-1)
    assert torch.all(dist.min(1).values < 1e-8)
    picked = dist.argmin(1)
    assert 0 < (picked != a.codes[:, 0]).sum() < 200


def test_residuals_shrink_level_by_level_on_clustered_data() -> None:
    q = _quantizer(levels=3, k=4)
    z = _hierarchical()
    q.init_kmeans(z, iters=10, generator=torch.Generator().manual_seed(0))
    norms = [r.pow(2).sum(1).mean().item() for r in q.residuals(z)]
    _, z_hat = q.encode(z)
    norms.append((z - z_hat).pow(2).sum(1).mean().item())
    assert all(a > 2 * b for a, b in zip(norms, norms[1:])), norms
    soft = q.soft_quantize(z, temperature=0.01, gumbel_scale=0.0)
    assert soft.residual.pow(2).sum(1).mean() < 0.05 * norms[0]


def test_soft_quantize_gradients_reach_latents_and_every_codebook() -> None:
    q = _quantizer(levels=3, k=4)
    z = _hierarchical(n=64).requires_grad_(True)
    out = q.soft_quantize(z, temperature=0.5, gumbel_scale=0.1)
    assert out.z_hat.shape == (64, 8) and out.codes.shape == (64, 3) and out.codes.dtype == torch.int64
    out.z_hat.pow(2).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert q.codebooks.grad is not None and (q.codebooks.grad.abs().sum(dim=(1, 2)) > 0).all()


def test_straight_through_quantisation() -> None:
    q = _quantizer(levels=2, k=4)
    z = _hierarchical(n=50).requires_grad_(True)
    z_q, codes, loss = q.ste_quantize(z, beta=0.25)
    hard_codes, z_hard = q.encode(z)
    assert torch.equal(codes, hard_codes)
    torch.testing.assert_close(z_q, z_hard)
    # VQ loss by hand: sum over levels of (1 + beta) * mean squared residual-to-codeword distance
    r, expected = z.detach().clone(), 0.0
    for level in range(2):
        e = q.codebooks[level][codes[:, level]].detach()
        expected += 1.25 * (r - e).pow(2).mean().item()
        r = r - e
    assert abs(loss.item() - expected) < 1e-4
    z_q.sum().backward(retain_graph=True)
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # straight through
    loss.backward()
    assert q.codebooks.grad is not None and q.codebooks.grad.abs().sum() > 0


def test_shared_codebook_serves_every_level() -> None:
    q = _quantizer(levels=3, k=4, shared=True)
    assert q.codebooks.shape == (1, 4, 8) and q.stacked().shape == (3, 4, 8)
    z = _hierarchical(n=100)
    q.init_kmeans(z, iters=3, generator=torch.Generator().manual_seed(0))
    codes, z_hat = q.encode(z)
    manual = sum(q.codebooks[0][codes[:, level]] for level in range(3))
    torch.testing.assert_close(z_hat, manual, atol=1e-5, rtol=1e-5)


def test_dead_code_reset_is_deterministic_and_only_touches_dead_codes() -> None:
    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        q = _quantizer(levels=2, k=4, dim=3)
        q.add_usage(torch.tensor([[0, 1], [0, 1], [2, 1]]))  # level 0 uses 0 and 2; level 1 only 1
        before = q.codebooks.detach().clone()
        residuals = [torch.full((5, 3), 7.0) + torch.arange(5.0)[:, None], torch.full((5, 3), -7.0)]
        dead = q.reset_dead_codes(residuals, min_count=1, generator=torch.Generator().manual_seed(seed))
        assert dead.tolist() == [[False, True, False, True], [True, False, True, True]]
        after = q.codebooks.detach()
        assert torch.equal(after[~dead], before[~dead])
        assert torch.all(after[0, dead[0]] >= 7.0) and torch.all(after[1, dead[1]] == -7.0)
        assert q.usage.sum() == 0  # counts restart after a reset
        return after.clone(), dead

    a, _ = run(0)
    b, _ = run(0)
    assert torch.equal(a, b)


def test_usage_counts_and_batch_perplexity_match_the_metrics_module() -> None:
    q = _quantizer(levels=2, k=4, dim=3)
    codes = torch.tensor([[0, 1], [0, 2], [3, 2], [0, 2]])
    q.add_usage(codes)
    assert q.usage.tolist() == [[3, 0, 0, 1], [0, 1, 3, 0]]
    ppl = batch_perplexity(codes, 4).double().numpy()
    np.testing.assert_allclose(ppl, LevelUsage.from_codes(codes.numpy(), 4).perplexity(), rtol=1e-6)
    h = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    np.testing.assert_allclose(ppl, [np.exp(h), np.exp(h)], rtol=1e-6)


def test_codeword_similarity_against_a_loop() -> None:
    q = _quantizer(levels=2, k=3, dim=4)
    c = torch.nn.functional.normalize(q.codebooks.detach(), dim=-1)
    sims = [float(c[lvl, i] @ c[lvl, j]) for lvl in range(2) for i in range(3) for j in range(3) if i != j]
    assert abs(q.codeword_similarity().item() - sum(sims) / len(sims)) < 1e-6
