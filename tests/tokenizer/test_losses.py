from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from simcit_dist.tokenizer.losses import _logsumexp, multiview_nt_xent, related_entries
from tests.tokenizer.fake_dist import run_ranks


def reference_loss(anchor: torch.Tensor, views: torch.Tensor, valid: torch.Tensor, anchor_ids: torch.Tensor,
                   view_ids: torch.Tensor, related: torch.Tensor, tau: float, symmetric: bool) -> list[float]:
    """Plain loops over queries and keys, straight from the definition."""
    a = F.normalize(anchor.double(), dim=-1)
    b = F.normalize(views.double(), dim=-1)
    n, n_views = views.shape[:2]
    out = []
    for v in range(n_views):
        total, count = 0.0, 0
        for i in range(n):
            if not valid[i, v]:
                continue
            rel = {int(x) for x in related[i] if x >= 0}
            anchors = [j for j in range(n) if j != i and int(anchor_ids[j]) not in rel]
            others = [j for j in range(n) if j != i and valid[j, v] and int(view_ids[j, v]) not in rel]
            pos = math.exp(float(a[i] @ b[i, v]) / tau)
            neg = sum(math.exp(float(a[i] @ b[j, v]) / tau) for j in others)
            neg += sum(math.exp(float(a[i] @ a[j]) / tau) for j in anchors)
            loss = -math.log(pos / (pos + neg))
            if symmetric:
                neg = sum(math.exp(float(b[i, v] @ a[j]) / tau) for j in anchors)
                neg += sum(math.exp(float(b[i, v] @ b[j, v]) / tau) for j in others)
                loss = 0.5 * (loss - math.log(pos / (pos + neg)))
            total, count = total + loss, count + 1
        out.append(total / max(count, 1))
    return out


def _random_inputs(n: int = 12, n_views: int = 2, dim: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([10, 11, 12, 10, 13, 14, 15, 16, 12, 17, 18, 19])[:n]  # items 10 and 12 appear twice
    partner = torch.tensor([11, -1, 19, 11, -1, 16, -1, 14, -1, 10, -1, -1])[:n]
    valid = torch.rand(n, n_views, generator=g) > 0.2
    valid[:, -1] &= partner >= 0  # the last view is the pair view: only rows with a partner
    return {
        "anchor": torch.randn(n, dim, generator=g),
        "views": torch.randn(n, n_views, dim, generator=g),
        "valid": valid,
        "anchor_ids": ids,
        "view_ids": torch.stack([ids] * (n_views - 1) + [partner], dim=1),
        "related_ids": torch.stack([ids, partner], dim=1),
    }


def test_hand_computed_two_item_example() -> None:
    anchor = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    views = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])  # b1 = e1, b2 = (e1 + e2) / sqrt(2)
    ids = torch.tensor([0, 1])
    args = (anchor, views, torch.ones(2, 1, dtype=torch.bool), ids, ids[:, None], ids[:, None], 0.5)
    e, s = math.e, math.exp(math.sqrt(0.5) / 0.5)  # exp(1/tau) and exp(cos 45deg / tau)
    # query a1: pos a1.b1 = 1; negatives a1.b2 = cos45, a1.a2 = 0
    l1 = -math.log(e**2 / (e**2 + s + 1))
    # query a2: pos a2.b2 = cos45; negatives a2.b1 = 0, a2.a1 = 0
    l2 = -math.log(s / (s + 1 + 1))
    # reverse direction: b1 (pos 1; b1.a2 = 0, b1.b2 = cos45) and b2 (pos cos45; b2.a1 = b2.b1 = cos45)
    l1r = -math.log(e**2 / (e**2 + 1 + s))
    l2r = math.log(3.0)
    one_way = multiview_nt_xent(*args, symmetric=False)
    both = multiview_nt_xent(*args, symmetric=True)
    assert one_way.item() == pytest.approx((l1 + l2) / 2, rel=1e-5)
    assert both.item() == pytest.approx((l1 + l2 + l1r + l2r) / 4, rel=1e-5)


@pytest.mark.parametrize("symmetric", [True, False])
def test_matches_the_loop_reference_with_duplicates_partners_and_missing_views(symmetric: bool) -> None:
    inp = _random_inputs()
    got = multiview_nt_xent(**inp, tau=0.3, symmetric=symmetric)
    ref = reference_loss(*inp.values(), tau=0.3, symmetric=symmetric)
    torch.testing.assert_close(got.double(), torch.tensor(ref, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_duplicate_item_is_not_its_own_negative() -> None:
    inp = _random_inputs()
    base = multiview_nt_xent(**inp, tau=0.3)
    # Make row 3 (item 10 again) identical to row 0: were it a negative, row 0's loss would rise a lot.
    for key in ("anchor", "views"):
        inp[key] = inp[key].clone()
        inp[key][3] = inp[key][0]
    dup = multiview_nt_xent(**inp, tau=0.3)
    ids = inp["anchor_ids"].clone()
    ids[3] = 99  # same vectors, but now a different item: a hard negative
    inp["anchor_ids"], inp["view_ids"] = ids, inp["view_ids"].clone()
    inp["view_ids"][3, 0] = 99
    hard = multiview_nt_xent(**inp, tau=0.3)
    assert torch.all(hard > dup + 0.05) and torch.all((dup - base).abs() < 1.0)


def _split_loss(inp: dict[str, torch.Tensor], world: int, symmetric: bool) -> torch.Tensor:
    n = inp["anchor"].shape[0] // world

    def rank_loss(rank: int, gather: object) -> torch.Tensor:
        local = {k: v[rank * n:(rank + 1) * n] for k, v in inp.items()}
        return multiview_nt_xent(**local, tau=0.3, symmetric=symmetric, gather=gather)  # type: ignore[arg-type]

    return torch.stack(run_ranks(world, rank_loss)).mean(0)  # DDP averages the ranks' gradients


@pytest.mark.parametrize(("world", "symmetric"), [(2, True), (3, False), (4, True)])
def test_gathered_keys_equal_the_full_batch_loss_and_gradients(world: int, symmetric: bool) -> None:
    full_inp = _random_inputs()
    full_inp["anchor"].requires_grad_(True)
    full_inp["views"].requires_grad_(True)
    full = multiview_nt_xent(**full_inp, tau=0.3, symmetric=symmetric)
    full.sum().backward()
    grads = (full_inp["anchor"].grad.clone(), full_inp["views"].grad.clone())  # type: ignore[union-attr]

    split_inp = {k: v.detach().clone() for k, v in full_inp.items()}
    split_inp["anchor"].requires_grad_(True)
    split_inp["views"].requires_grad_(True)
    split = _split_loss(split_inp, world, symmetric)
    split.sum().backward()
    torch.testing.assert_close(split, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(split_inp["anchor"].grad, grads[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(split_inp["views"].grad, grads[1], rtol=1e-4, atol=1e-6)


def test_loss_is_finite_when_a_view_has_no_valid_row_or_every_key_is_masked() -> None:
    inp = _random_inputs(n=4)
    inp["valid"] = torch.zeros(4, 2, dtype=torch.bool)
    inp["anchor_ids"] = torch.full((4,), 5)
    inp["view_ids"] = torch.full((4, 2), 5)
    inp["anchor"].requires_grad_(True)
    loss = multiview_nt_xent(**inp, tau=0.1)
    assert torch.equal(loss, torch.zeros(2))
    loss.sum().backward()
    assert torch.isfinite(inp["anchor"].grad).all()  # type: ignore[arg-type]


@pytest.mark.parametrize("dim", [0, 1])
def test_fused_logsumexp_matches_torch_value_and_gradient(dim: int) -> None:
    x = torch.randn(6, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    masked = (torch.tensor([2, 0, 5]), torch.tensor([3, 8, 3]))  # entries that are not negatives
    invalid = torch.tensor([6]) if dim == 1 else None  # a key column with no valid view (row-wise only)
    dense = x.clone()
    dense[masked] = -1e9
    if invalid is not None:
        dense[:, invalid] = -1e9
    w = torch.randn(x.shape[1 - dim], dtype=torch.float64)
    ref_in = x.clone().requires_grad_(True)
    (torch.logsumexp(ref_in.masked_fill(dense == -1e9, -1e9), dim=dim) * w).sum().backward()
    got_in = x.clone().requires_grad_(True)
    got = _logsumexp(got_in.clone(), dim, masked, invalid)  # the function takes its input over: a fresh tensor
    (got * w).sum().backward()
    torch.testing.assert_close(got, torch.logsumexp(dense, dim=dim))
    torch.testing.assert_close(got_in.grad, ref_in.grad)
    assert got_in.grad[masked].abs().max() == 0  # type: ignore[index]
    if invalid is not None:
        assert got_in.grad[:, invalid].abs().max() == 0  # type: ignore[index]


def test_fused_logsumexp_refuses_a_second_backward() -> None:
    x = torch.randn(4, 5, requires_grad=True)
    out = _logsumexp(x * 1.0, 1).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass"):
        out.backward()


def test_related_entries_equal_a_dense_comparison() -> None:
    g = torch.Generator().manual_seed(3)
    key_ids = torch.randint(0, 15, (40,), generator=g)  # many duplicate keys
    related = torch.randint(-1, 15, (9, 3), generator=g)  # -1 pads never match
    related[0] = torch.tensor([7, 7, -1])  # the same id twice in one row: listed twice, harmless
    rows, cols = related_entries(related, key_ids)
    dense = torch.zeros(9, 40, dtype=torch.bool)
    for i in range(9):
        for j in range(40):
            dense[i, j] = any(int(r) == int(key_ids[j]) for r in related[i] if r >= 0)
    got = torch.zeros(9, 40, dtype=torch.bool)
    got[rows, cols] = True
    assert torch.equal(got, dense) and dense.sum() > 9
    assert rows.numel() == sum(int((key_ids == r).sum()) for row in related for r in row if r >= 0)
