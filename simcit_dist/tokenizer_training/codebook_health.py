"""Dead-code re-initialisation under DDP, keeping every replica's codebooks identical.

Usage counts are summed over ranks and the residuals of the global batch gathered, then every
rank runs the tokenizer's own (seeded) reset with the same generator seed: the same inputs give
the same codebooks everywhere, without a broadcast.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from simcit_dist.train.gather import all_gather_no_grad


def synced_dead_code_reset(tokenizer: Any, batch: dict[str, Tensor], seed: int, device: torch.device) -> int:
    """Reset rarely used codewords from the global batch's residuals; returns how many."""
    usage = tokenizer.quantizer.usage.clone().to(device)  # (L_books, K) counts since the last reset
    if dist.is_initialized():
        dist.all_reduce(usage)
    residuals = [all_gather_no_grad(r.contiguous()) for r in tokenizer.residuals(batch)]
    generator = torch.Generator().manual_seed(seed)
    return int(tokenizer.reset_dead_codes(residuals, generator, usage).sum())
