"""Multi-view NT-Xent between an item's quantised reconstruction and each of its views.

Written as *local queries x global keys* (open_clip's ``ClipLoss(local_loss=True)``): each rank
scores its own B queries against the N = world_size * B keys gathered from every rank (with
gradient), and the positive of local row i is global column ``rank * B + i``. Each rank's loss is
``world_size * sum(local query losses) / (valid queries on all ranks)``, so DDP's gradient
average over ranks equals the gradient of the single-process loss on the concatenated batch.

For query anchor a_i = g(z_hat_i) and view v with keys b_j = h_v(.) (all L2-normalised):

    l_i = -log  exp(a_i.b_i / tau) / ( sum_j exp(a_i.b_j / tau) + sum_{j != i} exp(a_i.a_j / tau) )

and, when symmetric, the same with the roles of a and b swapped, averaged. A key whose item id is
the query's own item or its co-occurrence partner (other than the positive itself) is not a
negative: duplicates of an item in a batch are false negatives.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

_MASKED = -1e9  # logit of a masked key: exp() underflows to 0 in float32, but stays finite


class Gather(Protocol):
    """All-gather with gradient, supplied by the distributed job.

    ``gather(t)`` concatenates a (B_local, ...) tensor from every rank along dim 0 in rank order,
    and routes gradients back to the owning rank (``torch.distributed.nn.all_gather``). It is
    also called on int64 tensors (ids, masks), which need no gradient. All ranks must use the same
    B_local.
    """

    rank: int
    world_size: int

    def __call__(self, t: Tensor) -> Tensor: ...


def related_mask(key_ids: Tensor, related_ids: Tensor) -> Tensor:
    """(B, N) bool: key j's item id is one of query i's related ids (``related_ids`` (B, R), -1 = none)."""
    mask = torch.zeros(related_ids.shape[0], key_ids.shape[0], dtype=torch.bool, device=key_ids.device)
    for r in range(related_ids.shape[1]):
        rel = related_ids[:, r:r + 1]  # (B, 1)
        mask |= (key_ids.unsqueeze(0) == rel) & (rel >= 0)
    return mask


def _mask_bias(mask: Tensor) -> Tensor:
    """(B, N) additive logit bias: 0 for keys, _MASKED for masked ones (no gradient needed)."""
    return torch.zeros(mask.shape, device=mask.device).masked_fill_(mask, _MASKED)


class _LogSumExp(torch.autograd.Function):
    """logsumexp over one dim of a fresh (B, N) logits tensor, which it overwrites with the softmax.

    torch.logsumexp's backward recomputes exp(x - lse) in three more passes over (B, N); keeping
    the softmax makes the backward a single multiply. The logits must not be used elsewhere.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, logits: Tensor, dim: int) -> Tensor:  # type: ignore[override]
        m = logits.amax(dim=dim, keepdim=True)
        p = logits.sub_(m).exp_()  # in place: the logits buffer becomes exp(x - max)
        s = p.sum(dim=dim, keepdim=True)
        p.div_(s)  # softmax
        ctx.save_for_backward(p)
        ctx.dim = dim  # type: ignore[attr-defined]
        return (m + s.log()).squeeze(dim)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (p,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return p * grad.unsqueeze(ctx.dim), None  # type: ignore[attr-defined]


def _logsumexp(logits: Tensor, dim: int) -> Tensor:
    return _LogSumExp.apply(logits, dim)  # type: ignore[no-any-return]


def _lse(bias: Tensor, queries: Tensor, keys: Tensor) -> Tensor:
    """(B,) logsumexp_j (bias_ij + q_i . k_j): the bias rides in the GEMM (addmm's beta), so masking
    costs no extra pass over the (B, N) logits and nothing in the backward."""
    return _logsumexp(torch.addmm(bias, queries, keys.t()), dim=1)


def _view_loss(a_s: Tensor, b_s: Tensor, keys_a: Tensor, keys_v: Tensor, bias_a: Tensor, bias_a_t: Tensor | None,
               bias_v: Tensor, lse_aa: Tensor, tau: float, symmetric: bool) -> Tensor:
    """(B,) loss of each local query for one view; a_s, b_s (B, P) are the normalised queries / tau.

    ``bias_a_t`` (the transposed anchor bias) is given in one process only, where the keys are the
    queries: b_i.a_j = a_j.b_i, so the b -> a logits are the a -> b logits transposed, reduced over
    dim 0 -- one GEMM forward and two backward fewer.
    """
    pos = (a_s * b_s).sum(-1) * tau  # (B,) a_i.b_i / tau; never among the negatives
    lse_ba: Tensor | None = None
    if bias_a_t is not None:
        raw = a_s @ keys_v.t()  # (B, B) a_i.b_j / tau
        lse_ab = _logsumexp(raw + bias_v, dim=1)
        lse_ba = _logsumexp(raw + bias_a_t, dim=0)  # query b_j against anchors a_i
    else:
        lse_ab = _lse(bias_v, a_s, keys_v)
    loss = F.softplus(torch.logaddexp(lse_ab, lse_aa) - pos)  # -log(e^pos / (e^pos + e^neg))
    if not symmetric:
        return loss
    if lse_ba is None:
        lse_ba = _lse(bias_a, b_s, keys_a)
    neg_b = torch.logaddexp(lse_ba, _lse(bias_v, b_s, keys_v))  # views' negatives: anchors and views
    return 0.5 * (loss + F.softplus(neg_b - pos))


def multiview_nt_xent(anchor: Tensor, views: Tensor, valid: Tensor, anchor_ids: Tensor, view_ids: Tensor,
                      related_ids: Tensor, tau: float, symmetric: bool = True,
                      gather: Gather | None = None) -> Tensor:
    """Per-view NT-Xent losses (V,), each already scaled for DDP averaging (see module doc).

    anchor (B, P): g(z_hat); views (B, V, P): h_v of each view; valid (B, V) bool: the row has
    view v (missing modality / no partner rows are neither queries nor keys of that view);
    anchor_ids (B,): item ids; view_ids (B, V): the item each view represents (the partner's id
    for the pair view); related_ids (B, R): ids that are never negatives for the row's queries
    (its own id and its partner's; -1 pads).
    """
    with torch.autocast(device_type=anchor.device.type, enabled=False):
        return _nt_xent(anchor.float(), views.float(), valid, anchor_ids, view_ids, related_ids, tau,
                        symmetric, gather)


def _nt_xent(anchor: Tensor, views: Tensor, valid: Tensor, anchor_ids: Tensor, view_ids: Tensor,
             related_ids: Tensor, tau: float, symmetric: bool, gather: Gather | None) -> Tensor:
    n_views = views.shape[1]
    a = F.normalize(anchor, dim=-1)  # (B, P)
    b = F.normalize(views, dim=-1)  # (B, V, P)
    # One gather for all features and one for all metadata: collectives are the cost, not bytes.
    feats = torch.cat([a.unsqueeze(1), b], dim=1)  # (B, 1+V, P)
    meta = torch.cat([anchor_ids.unsqueeze(1), view_ids, valid.long()], dim=1)  # (B, 1+2V)
    world = 1
    if gather is not None:
        feats, meta, world = gather(feats), gather(meta), gather.world_size
    keys_a = feats[:, 0]  # (N, P)
    b_local = anchor.shape[0]
    rank = gather.rank if gather is not None else 0
    self_mask = torch.zeros(b_local, feats.shape[0], dtype=torch.bool, device=anchor.device)  # (B, N)
    rows = torch.arange(b_local, device=anchor.device)
    self_mask[rows, rank * b_local + rows] = True  # the query's own row: never a negative
    fn_anchor = related_mask(meta[:, 0], related_ids) | self_mask  # (B, N)
    bias_a = _mask_bias(fn_anchor)
    a_s = a / tau
    lse_aa = _lse(bias_a, a_s, keys_a)  # (B,) reconstructions as negatives of a
    bias_a_t = bias_a.t().contiguous() if symmetric and world == 1 else None
    losses = []
    for v in range(n_views):
        keys_v = feats[:, 1 + v]  # (N, P)
        key_valid = meta[:, 1 + n_views + v].bool()  # (N,)
        if torch.equal(meta[:, 1 + v], meta[:, 0]):  # a view of the row's own item (every modality view)
            mask_v = fn_anchor | ~key_valid.unsqueeze(0)
        else:
            mask_v = related_mask(meta[:, 1 + v], related_ids) | ~key_valid.unsqueeze(0) | self_mask  # (B, N)
        loss = _view_loss(a_s, b[:, v] / tau, keys_a, keys_v, bias_a, bias_a_t, _mask_bias(mask_v), lse_aa, tau,
                          symmetric)
        n_valid = key_valid.sum().clamp_min(1)  # valid queries on all ranks
        losses.append(world * (loss * valid[:, v]).sum() / n_valid)
    return torch.stack(losses) if losses else anchor.new_zeros(0)
