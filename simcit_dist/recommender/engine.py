"""One place that creates the DeepSpeed engine, and the training steps (DeepSpeed and plain DDP).

``deepspeed_step`` and ``ddp_step`` compute the same loss on the same batch, so a benchmark can
time one against the other; the training loop uses the DeepSpeed one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from simcit_dist.recommender.catalog import SidLayout
from simcit_dist.recommender.config import ModelConfig, RecommenderTrainConfig
from simcit_dist.recommender.model import TigerModel
from simcit_dist.train.lr_schedule import build_scheduler

if TYPE_CHECKING:  # examples pulls in the data stack (polars); the steps only need the type
    from simcit_dist.recommender.examples import Batch

log = logging.getLogger(__name__)


def build_model(cfg: ModelConfig, layout: SidLayout, max_history: int, seed: int) -> TigerModel:
    """The same initial weights on every rank (seeded), before any engine wraps it."""
    torch.manual_seed(seed)
    return TigerModel(cfg, layout, max_history)


def build_optimizer(model: nn.Module, cfg: RecommenderTrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (no decay on biases, norms, embeddings) and a linear warm-up schedule."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n and "pos" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n and "pos" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    # Linear warm-up, then constant: the tokenizer's schedule with kind "constant".
    return optimizer, build_scheduler(optimizer, 0, cfg.warmup_steps, "constant", 1.0)


def build_engine(model: nn.Module, cfg: RecommenderTrainConfig) -> Any:
    """``deepspeed.initialize`` with a torch optimizer (nothing to compile) and our DeepSpeed config.

    Uses the process group Ray Train already set up (gloo on CPU, nccl on GPU).
    """
    import deepspeed

    optimizer, schedule = build_optimizer(model, cfg)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule,
                                           config=cfg.deepspeed_config())
    log.info("DeepSpeed engine: ZeRO stage %d, %s, micro batch %d (global batch %d)", cfg.zero_stage, cfg.precision,
             cfg.per_worker_batch, cfg.batch_size)
    return engine


def batch_loss(model: Any, batch: Batch, device: torch.device) -> torch.Tensor:
    return model(batch.src.to(device), batch.tgt_in.to(device), batch.tgt_codes.to(device))


def deepspeed_step(engine: Any, batch: Batch) -> float:
    """Forward, ``engine.backward``, ``engine.step`` (clipping, ZeRO reduction, LR schedule inside)."""
    loss = batch_loss(engine, batch, engine.device)
    engine.backward(loss)
    engine.step()
    return float(loss.detach())


def ddp_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, device: torch.device,
             clip: float | None = 1.0) -> float:
    """The plain-DDP equivalent of :func:`deepspeed_step` (``model`` wrapped in DistributedDataParallel)."""
    optimizer.zero_grad(set_to_none=True)
    loss = batch_loss(model, batch, device)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(loss.detach())


def consolidated_state_dict(engine: Any) -> dict[str, torch.Tensor] | None:
    """Full model weights on rank 0 (``None`` elsewhere). Collective under ZeRO-3: call on every rank."""
    import torch.distributed as dist

    if engine.zero_optimization_partition_weights():
        return engine._zero3_consolidated_16bit_state_dict()
    if dist.is_initialized() and dist.get_rank() != 0:
        return None
    return {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
