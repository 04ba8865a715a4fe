"""Multi-view NT-Xent between an item's quantised reconstruction and each of its views.

Written as *local queries x global keys* (open_clip's ``ClipLoss(local_loss=True)``): each rank
scores its own B queries against the N = world_size * B keys gathered from every rank (with
gradient), and the positive of local row i is global column ``rank * B + i``. Each rank's loss is
``world_size * sum(local query losses) / (valid queries on all ranks)``, so DDP's gradient
average over ranks equals the gradient of the single-process loss on the concatenated batch.

For query anchor a_i = g(z_hat_i) and view v with keys b_j = h_v(.) (all L2-normalised):

    l_i = -log  exp(a_i.b_i / tau) / ( sum_j exp(a_i.b_j / tau) + sum_{j != i} exp(a_i.a_j / tau) )

and, when symmetric, the same with the roles of a and b swapped, averaged. The b -> a logits are
the a -> b logits read down the columns, so each rank reduces its (B, N) block over its own anchors
and one small all-to-all of those (V, N) column logsumexps completes them (no third GEMM per view).
A key whose item id is the query's own item or its co-occurrence partner (other than the positive
itself) is not a negative: duplicates of an item in a batch are false negatives.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

_MASKED = -1e9  # logit of a masked key: exp() underflows to 0 in float32, but stays finite


class Gather(Protocol):
    """The loss's collectives with gradient, supplied by the distributed job.

    ``gather(t)`` concatenates a (B_local, ...) tensor from every rank along dim 0 in rank order,
    and routes gradients back to the owning rank (``AllGatherWithGrad``: all-gather forward,
    reduce-scatter backward). It is also called on int64 tensors (ids, masks), which need no
    gradient. All ranks must use the same B_local. ``gather.exchange(t)`` is an all-to-all:
    t (world, ...) holds in ``t[r]`` what goes to rank r, and the result's ``[s]`` is what rank s
    sent here (its backward is the same all-to-all).
    """

    rank: int
    world_size: int

    def __call__(self, t: Tensor) -> Tensor: ...

    def exchange(self, t: Tensor) -> Tensor: ...


Entries = tuple[Tensor, Tensor]  # (rows, cols) of the logits that are not negatives


def related_entries(related_ids: Tensor, key_ids: Tensor) -> Entries:
    """(rows, cols) where key ``cols``'s item id is one of query ``rows``'s related ids
    (``related_ids`` (Q, R), -1 = none; ``key_ids`` (K,)).

    A sorted search, O((Q R + K) log K): a dense (Q, K) comparison per related id would cost
    several passes over the whole logits matrix, as much as its GEMM on a CPU.
    """
    sorted_ids, order = torch.sort(key_ids)
    flat = related_ids.reshape(-1).contiguous()
    lo = torch.searchsorted(sorted_ids, flat, side="left")
    hi = torch.searchsorted(sorted_ids, flat, side="right")
    counts = torch.where(flat >= 0, hi - lo, torch.zeros_like(lo))
    run_start = torch.cumsum(counts, 0) - counts  # where each query id's matches start in the output
    pos = torch.repeat_interleave(lo - run_start, counts)
    pos += torch.arange(pos.numel(), device=pos.device)  # -> lo[e] + 0, 1, ... within each run
    query = torch.arange(flat.numel(), device=flat.device) // related_ids.shape[1]
    return torch.repeat_interleave(query, counts), order[pos]


def _join(*parts: Entries) -> Entries:
    return torch.cat([r for r, _ in parts]), torch.cat([c for _, c in parts])


class _LogSumExp(torch.autograd.Function):
    """Masked logsumexp over one dim of a fresh (B, N) logits tensor, which it takes over: the
    masked entries and the ``invalid_keys`` columns are set to _MASKED in place, then the buffer
    becomes exp(x - max).

    torch.logsumexp's backward recomputes exp(x - lse) in three more passes over (B, N); keeping
    exp(x - max) and its sums makes the backward a single in-place multiply. Masking inside the
    function costs nothing in the backward (the masked weights are exactly 0), where an autograd
    index_put would copy the whole gradient. Every (B, N) pass counts: on a CPU a fresh 128 MB
    buffer costs more in page faults than the arithmetic on it. The logits must not be used
    elsewhere, and the graph supports one backward pass (the saved buffer becomes the gradient).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, logits: Tensor, dim: int,  # type: ignore[override]
                masked: Entries | None, invalid_keys: Tensor | None) -> Tensor:
        if masked is not None:
            logits.index_put_(masked, logits.new_tensor(_MASKED))
        if invalid_keys is not None and invalid_keys.numel():
            if dim != 1:
                raise ValueError("invalid_keys masks key columns of a row-wise (dim=1) logsumexp")
            logits.index_fill_(1, invalid_keys, _MASKED)
        m = logits.amax(dim=dim, keepdim=True)
        p = logits.sub_(m).exp_()  # in place: the logits buffer becomes exp(x - max)
        s = p.sum(dim=dim, keepdim=True)
        ctx.save_for_backward(p, s)  # softmax = p / s, divided in the backward's one multiply
        ctx.dim = dim  # type: ignore[attr-defined]
        ctx.spent = False  # type: ignore[attr-defined]
        return (m + s.log()).squeeze(dim)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,  # type: ignore[override]
                 grad: Tensor) -> tuple[Tensor, None, None, None]:
        if ctx.spent:  # type: ignore[attr-defined]
            raise RuntimeError("the fused logsumexp supports one backward pass (retain_graph is not supported)")
        ctx.spent = True  # type: ignore[attr-defined]
        p, s = ctx.saved_tensors  # type: ignore[attr-defined]
        return p.mul_(grad.unsqueeze(ctx.dim) / s), None, None, None  # type: ignore[attr-defined]


def _logsumexp(logits: Tensor, dim: int, masked: Entries | None = None,
               invalid_keys: Tensor | None = None) -> Tensor:
    return _LogSumExp.apply(logits, dim, masked, invalid_keys)  # type: ignore[no-any-return]


def _lse(queries: Tensor, keys: Tensor, masked: Entries, invalid_keys: Tensor | None = None) -> Tensor:
    """(B,) logsumexp_j q_i . k_j over the unmasked keys."""
    return _logsumexp(queries @ keys.t(), 1, masked, invalid_keys)


def _anchor_direction(a_s: Tensor, b_s: Tensor, keys_v: Tensor, masked_v: Entries, invalid_v: Tensor,
                      masked_a_t: Entries | None, lse_aa: Tensor, tau: float) -> tuple[Tensor, Tensor, Tensor | None]:
    """One view's a -> b losses (B,), its positives' logits (B,), and -- when ``masked_a_t`` is given --
    the column logsumexps (N,) of the same logits: every view query b_j against this rank's anchors.

    b_j.a_i = a_i.b_j, so the b -> a logits are the a -> b logits read down the columns; the N
    column sums over the local anchors are all a rank needs to contribute to the b -> a direction,
    which saves one of the three (B, N) GEMMs (forward and both backward) per view.
    """
    pos = (a_s * b_s).sum(-1) * tau  # (B,) a_i.b_i / tau; never among the negatives
    raw = a_s @ keys_v.t()  # (B, N) a_i.b_j / tau
    by_row = raw.clone() if masked_a_t is not None else raw
    lse_ab = _logsumexp(by_row, 1, masked_v, invalid_v)
    loss = F.softplus(torch.logaddexp(lse_ab, lse_aa) - pos)  # -log(e^pos / (e^pos + e^neg))
    col_lse = _logsumexp(raw, 0, masked_a_t) if masked_a_t is not None else None
    return loss, pos, col_lse


def _local_columns(col_lse: Tensor, gather: Gather | None, b_local: int) -> Tensor:
    """(V, N) column logsumexps over each rank's anchors -> (V, B) over all anchors, for this rank's
    own queries: an all-to-all (with gradient) sends each rank the (V, B) block of its queries'
    columns -- V * N numbers in and out per rank whatever the world size -- and a logsumexp over
    the senders combines them."""
    if gather is None:
        return col_lse
    n_views = col_lse.shape[0]
    outgoing = col_lse.view(n_views, gather.world_size, b_local).transpose(0, 1)  # [r]: rank r's queries
    return torch.logsumexp(gather.exchange(outgoing.contiguous()), dim=0)  # (world, V, B) -> (V, B)


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
    meta = torch.cat([anchor_ids.unsqueeze(1), view_ids, valid.long(), related_ids], dim=1)  # (B, 1+2V+R)
    world = 1
    if gather is not None:
        feats, meta, world = gather(feats), gather(meta), gather.world_size
    keys_a = feats[:, 0]  # (N, P)
    b_local = anchor.shape[0]
    rank = gather.rank if gather is not None else 0
    rows = torch.arange(b_local, device=anchor.device)
    own: Entries = (rows, rank * b_local + rows)  # the query's own row: never a negative
    masked_a = _join(related_entries(related_ids, meta[:, 0]), own)
    a_s = a / tau
    lse_aa = _lse(a_s, keys_a, masked_a)  # (B,) reconstructions as negatives of a
    masked_a_t: Entries | None = None
    if symmetric:  # [i, j]: local anchor i is not a negative of view query j (any rank's)
        queries, anchors = related_entries(meta[:, 1 + 2 * n_views:], anchor_ids)
        masked_a_t = _join((anchors, queries), own)
    view_terms, col_lses = [], []
    for v in range(n_views):
        keys_v = feats[:, 1 + v]  # (N, P)
        key_valid = meta[:, 1 + n_views + v].bool()  # (N,)
        invalid_v = (~key_valid).nonzero().squeeze(1)
        if torch.equal(meta[:, 1 + v], meta[:, 0]):  # a view of the row's own item (every modality view)
            masked_v = masked_a
        else:
            masked_v = _join(related_entries(related_ids, meta[:, 1 + v]), own)
        b_s = b[:, v] / tau
        loss, pos, col_lse = _anchor_direction(a_s, b_s, keys_v, masked_v, invalid_v, masked_a_t, lse_aa, tau)
        lse_bb = _lse(b_s, keys_v, masked_v, invalid_v) if symmetric else None  # the view's own negatives
        view_terms.append((loss, pos, lse_bb, key_valid.sum().clamp_min(1)))  # valid queries, all ranks
        if col_lse is not None:
            col_lses.append(col_lse)
    lse_ba = _local_columns(torch.stack(col_lses), gather, b_local) if col_lses else None  # (V, B)
    losses = []
    for v, (loss, pos, lse_bb, n_valid) in enumerate(view_terms):
        if lse_ba is not None and lse_bb is not None:
            neg_b = torch.logaddexp(lse_ba[v], lse_bb)  # views' negatives: anchors and views
            loss = 0.5 * (loss + F.softplus(neg_b - pos))
        losses.append(world * (loss * valid[:, v]).sum() / n_valid)
    return torch.stack(losses) if losses else anchor.new_zeros(0)
