"""The first lines of every Ray Train worker loop (tokenizer and recommender alike)."""

from __future__ import annotations

import ray.train
import torch

from simcit_dist.logs import filter_to_rank_zero
from simcit_dist.train.config import TrainSection


def start_worker(train: TrainSection) -> tuple[int, int]:
    """(rank, world size) of this worker, with its log lines filtered to rank 0 and torch's
    intra-op threads set from ``train.torch_threads`` (0 = ``cpus_per_worker``): left alone, each
    worker would size its pool to the whole machine and the workers would oversubscribe the cores."""
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    filter_to_rank_zero(rank)
    torch.set_num_threads(train.threads)
    return rank, world
