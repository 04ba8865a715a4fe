"""Single-process fitting of any tokenizer: tests, benchmarks and catalogs that fit one machine.

The distributed job (Ray Train, DDP) has its own loop; this one is the plain reference of what a
training step is: ``training_loss`` (which initialises the codebooks from the first batch unless
they already are) -> AdamW step, and, when the
config asks for it, a dead-code reset every ``dead_code_every`` steps from the current batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import torch

from simcit_dist.tokenizer.base import FittableTokenizer, Tokenizer, TrainableTokenizer
from simcit_dist.tokenizer.inputs import Batch
from simcit_dist.tokenizer.train_utils import adamw

log = logging.getLogger(__name__)


def fit_local(tokenizer: Tokenizer, batches: Iterable[Batch], total_steps: int, lr: float = 1e-3,
              weight_decay: float = 0.0, seed: int = 0) -> list[dict[str, float]]:
    """Train ``tokenizer`` in place on up to ``total_steps`` batches; returns per-step metrics.

    RQ-KMeans is fitted once on the batches (a sample of items) and returns one metrics row.
    """
    if isinstance(tokenizer, TrainableTokenizer):
        return _train(tokenizer, iter(batches), total_steps, lr, weight_decay, seed)
    if isinstance(tokenizer, FittableTokenizer):
        return [tokenizer.fit(batches)]
    raise TypeError(f"{type(tokenizer).__name__} has neither training_loss nor fit")


def _train(tokenizer: TrainableTokenizer, batches: Iterator[Batch], total_steps: int, lr: float,
           weight_decay: float, seed: int) -> list[dict[str, float]]:
    optimizer = adamw(tokenizer.parameters(), lr=lr, weight_decay=weight_decay)
    cfg = getattr(tokenizer, "cfg", None)
    reset_every = int(getattr(cfg, "dead_code_every", 0)) if getattr(cfg, "dead_code_reset", False) else 0
    generator = torch.Generator().manual_seed(seed)
    tokenizer.train()
    history: list[dict[str, float]] = []
    for step in range(total_steps):
        batch = next(batches, None)
        if batch is None:
            log.warning("fit_local: batches ran out after %d of %d steps", step, total_steps)
            break
        loss, metrics = tokenizer.training_loss(batch, step, total_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if reset_every and (step + 1) % reset_every == 0 and step + 1 < total_steps:
            dead = tokenizer.reset_dead_codes(tokenizer.residuals(batch), generator)
            metrics["dead_codes_reset"] = float(dead.sum())
        history.append(metrics)
    return history


def sample_batches(batch: Batch, batch_size: int, steps: int, seed: int = 0) -> Iterator[Batch]:
    """``steps`` random mini-batches (without replacement within each) of an in-memory batch."""
    n = next(iter(batch.values())).shape[0]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(n, generator=generator)[: min(batch_size, n)]
        yield {k: v[idx] for k, v in batch.items()}
