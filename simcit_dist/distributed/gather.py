"""Cross-worker gathers for the contrastive loss (open_clip's ``gather_features``, in small).

``AllGatherWithGrad`` is the tokenizer loss's ``Gather``: every rank gets the keys of all ranks
in rank order, and the backward pass sums each rank's key gradients back to its owner
(``torch.distributed.nn.functional.all_gather``); its ``exchange`` is the matching all-to-all.
With DDP's gradient average on top, the parameter gradients equal those of one process computing
the loss on the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
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
        return torch.cat(dist_fn.all_gather(t.contiguous()), dim=0)

    def exchange(self, t: Tensor) -> Tensor:
        """All-to-all of a (world_size, ...) tensor: ``t[r]`` goes to rank r, the result's ``[s]``
        came from rank s; the backward sends each gradient block back where it came from."""
        if self.world_size == 1:
            return t
        received = list(torch.empty_like(t).unbind(0))
        return torch.stack(dist_fn.all_to_all(received, [x.contiguous() for x in t.unbind(0)]))


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
