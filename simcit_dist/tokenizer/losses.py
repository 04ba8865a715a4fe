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


def _masked_lse(logits: Tensor, mask: Tensor) -> Tensor:
    return torch.logsumexp(logits.masked_fill(mask, _MASKED), dim=1)


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
    a_s = a / tau
    lse_aa = _masked_lse(a_s @ keys_a.t(), fn_anchor)  # (B,) reconstructions as negatives of a
    losses = []
    for v in range(n_views):
        keys_v = feats[:, 1 + v]  # (N, P)
        key_valid = meta[:, 1 + n_views + v].bool()  # (N,)
        mask_v = related_mask(meta[:, 1 + v], related_ids) | ~key_valid.unsqueeze(0) | self_mask  # (B, N)
        pos = (a_s * b[:, v]).sum(-1)  # (B,) a_i.b_i / tau; the positive is never among the negatives
        neg = torch.logaddexp(_masked_lse(a_s @ keys_v.t(), mask_v), lse_aa)
        loss = F.softplus(neg - pos)  # -log(e^pos / (e^pos + e^neg))
        if symmetric:
            b_s = b[:, v] / tau
            neg_b = torch.logaddexp(_masked_lse(b_s @ keys_a.t(), fn_anchor), _masked_lse(b_s @ keys_v.t(), mask_v))
            loss = 0.5 * (loss + F.softplus(neg_b - pos))
        n_valid = key_valid.sum().clamp_min(1)  # valid queries on all ranks
        losses.append(world * (loss * valid[:, v]).sum() / n_valid)
    return torch.stack(losses) if losses else anchor.new_zeros(0)
