"""An in-process stand-in for the loss's all-gather and all-to-all with gradient: one thread per rank.

Each rank's thread runs the same code it would run under DDP; ``ThreadGather(t)`` hands its
tensor to the others and returns the rank-ordered concatenation. All threads build one autograd
graph, so backpropagating the ranks' averaged losses routes every gradient to the rank that
produced the tensor -- what ``AllGatherWithGrad`` does across processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch


class _Group:
    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.barrier = threading.Barrier(world_size, timeout=60)
        self.lock = threading.Lock()
        self.slots: dict[int, list[Any]] = {}


class ThreadGather:
    def __init__(self, group: _Group, rank: int) -> None:
        self.group = group
        self.rank = rank
        self.world_size = group.world_size
        self.calls = 0

    def _post(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's tensor of this call, in rank order, once all ranks have posted theirs."""
        call, self.calls = self.calls, self.calls + 1
        with self.group.lock:
            self.group.slots.setdefault(call, [None] * self.world_size)[self.rank] = t
        self.group.barrier.wait()
        return self.group.slots[call]

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._post(t), dim=0)

    def exchange(self, t: torch.Tensor) -> torch.Tensor:
        """All-to-all: row r of every rank's (world, ...) tensor goes to rank r, in sender order."""
        return torch.stack([sent[self.rank] for sent in self._post(t)])


def run_ranks(world_size: int, fn: Callable[[int, ThreadGather], Any]) -> list[Any]:
    """fn(rank, gather) on ``world_size`` threads; returns the results in rank order."""
    group = _Group(world_size)
    results: list[Any] = [None] * world_size
    errors: list[BaseException] = []

    def work(rank: int) -> None:
        try:
            results[rank] = fn(rank, ThreadGather(group, rank))
        except BaseException as e:  # surface a rank's failure in the test, not a hang
            errors.append(e)
            group.barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
