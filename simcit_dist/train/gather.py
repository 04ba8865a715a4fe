"""Cross-worker gathers for the contrastive loss (open_clip's ``gather_features``, in small).

``AllGatherWithGrad`` is the tokenizer loss's ``Gather``: every rank gets the keys of all ranks
in rank order, and the backward pass sums each rank's key gradients back to its owner; its
``exchange`` is the matching all-to-all. With DDP's gradient average on top, the parameter
gradients equal those of one process computing the loss on the global batch.

The autograd functions are ours, over torch's public single-tensor collectives (one
``all_gather_single`` forward, one ``reduce_scatter_single`` backward; gloo and NCCL both have
them): ``torch.distributed.nn.functional`` is deprecated (a FutureWarning from every worker), and
on gloo its all-gather backward ran one scatter per rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


class AllGatherWithGrad:
    """Concatenate a (B_local, ...) tensor across ranks, differentiably. Every rank must pass
    the same B_local (the job splits the global batch equally and drops ragged last batches)."""

    def __init__(self) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("AllGatherWithGrad needs an initialised torch.distributed process group")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def __call__(self, t: Tensor) -> Tensor:
        if self.world_size == 1:
            return t
        out = _GatherRows.apply(t)
        assert isinstance(out, Tensor)
        return out

    def exchange(self, t: Tensor) -> Tensor:
        """All-to-all of a (world_size, ...) tensor: ``t[r]`` goes to rank r, the result's ``[s]``
        came from rank s; the backward sends each gradient block back where it came from."""
        if self.world_size == 1:
            return t
        if t.shape[0] != self.world_size:
            raise ValueError(f"exchange needs one block per rank: got {t.shape[0]} blocks for {self.world_size} ranks")
        out = _ExchangeBlocks.apply(t)
        assert isinstance(out, Tensor)
        return out


class _GatherRows(torch.autograd.Function):
    """(B, ...) on each rank -> (world x B, ...) in rank order; the gradient of a rank's rows is the
    sum of every rank's gradient for them (each rank's loss used them)."""

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:
        out = t.new_empty((dist.get_world_size() * t.shape[0], *t.shape[1:]))
        dist.all_gather_single(out, t.contiguous())
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.new_empty((grad.shape[0] // dist.get_world_size(), *grad.shape[1:]))
        dist.reduce_scatter_single(out, grad.contiguous())
        return out


class _ExchangeBlocks(torch.autograd.Function):
    """All-to-all of equal blocks along dim 0; its own adjoint, so the backward is the same exchange."""

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:
        out = torch.empty_like(t, memory_format=torch.contiguous_format)
        dist.all_to_all_single(out, t.contiguous())
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = torch.empty_like(grad, memory_format=torch.contiguous_format)
        dist.all_to_all_single(out, grad.contiguous())
        return out


def all_gather_no_grad(t: Tensor) -> Tensor:
    """Concatenate across ranks without autograd (ids, counts, metrics)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average float metrics over ranks (one collective for the whole dict)."""
    if not dist.is_initialized() or dist.get_world_size() == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))
