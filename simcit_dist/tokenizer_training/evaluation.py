"""End of tokenizer training (rank 0): SID metrics on the held-back items, and the outputs.

The held-back items never reach the optimizer (see ``holdout_mask``); their metrics are
reported beside those of uniformly random codes of the same shape, so "better than random"
is read off one table.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from simcit_dist.sids.metrics import sid_metrics
from simcit_dist.storage import resolve, write_json
from simcit_dist.tokenizer.artifact import save_artifact
from simcit_dist.tokenizer.inputs import arrow_to_batch
from simcit_dist.tokenizer_training.plan import TokenizerPlan
from simcit_dist.train.state import TrainState

log = logging.getLogger(__name__)
HISTORY_FILE = "training_history.json"


PROJECTION_POINTS = 3000


def encode_items(tokenizer: Any, batches: Any, modalities: list[str], device: torch.device
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes (N, L) int64, inputs concatenated (N, sum d), fused latents (N, D)) over Arrow batches."""
    codes, embeds, latents = [], [], []
    with torch.no_grad():
        for table in batches:
            batch = arrow_to_batch(table, modalities, with_partner=False, device=device)
            codes.append(tokenizer.encode(batch).cpu().numpy())
            latents.append(tokenizer.latent(batch).float().cpu().numpy())
            embeds.append(np.nan_to_num(torch.cat([batch[m] for m in modalities], 1).cpu().numpy()))
    if not codes:
        empty = np.zeros((0, 0), np.float32)
        return np.zeros((0, tokenizer.num_levels), np.int64), empty, empty
    return np.concatenate(codes), np.concatenate(embeds), np.concatenate(latents)


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components (N, 2) of ``x`` (N, D)."""
    centred = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def code_counts(codes: np.ndarray, codebook_size: int) -> list[list[int]]:
    return [np.bincount(codes[:, level], minlength=codebook_size).tolist() for level in range(codes.shape[1])]


def evaluate_holdout(tokenizer: Any, holdout: Any, plan: TokenizerPlan, device: torch.device
                     ) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, plot data: per-level code counts and a 2-D PCA of latents) for the held-back items."""
    if holdout is None:
        return {}, {}
    modalities = list(plan.input_dims)
    codes, embeds, latents = encode_items(
        tokenizer, holdout.iter_batches(batch_size=4096, batch_format="pyarrow"), modalities, device)
    if len(codes) < 2:
        log.warning("held-back sample has %d items; SID metrics skipped", len(codes))
        return {}, {}
    k = plan.cfg.tokenizer.codebook_size
    ours = sid_metrics(codes, k, embeddings=embeds)
    rng = np.random.default_rng(plan.cfg.data.seed)
    random = sid_metrics(rng.integers(0, k, size=codes.shape), k, embeddings=embeds)
    out = {f"holdout/{name}": float(v) for name, v in ours.items()}
    out.update({f"holdout_random/{name}": float(v) for name, v in random.items()})
    out["holdout/items"] = float(len(codes))
    log.info("held-back SID metrics (%d items): %s", len(codes),
             ", ".join(f"{n}={v:.4g} (random {random[n]:.4g})" for n, v in ours.items()))
    for warning in collapse_warnings(ours, random):
        log.warning("%s", warning)
    n = min(len(latents), PROJECTION_POINTS)
    plots = {"code_counts": code_counts(codes, k),
             "projection": {"xy": pca_2d(latents[:n]).round(4).tolist(), "c1": codes[:n, 0].tolist()}}
    return out, plots


COLLAPSE_RATIO = 0.1


def collapse_warnings(ours: dict[str, float], random: dict[str, float],
                      ratio: float = COLLAPSE_RATIO) -> list[str]:
    """One warning per level whose code perplexity on the held-back items is under ``ratio`` of that
    of uniformly random codes: a collapsed codebook. The job still finishes (the artifact is what
    training produced), but SID assignment would pile items onto a few code tuples and can run out
    of suffixes, so the user hears about it here, with what prevents it."""
    out = []
    for name in sorted(n for n in ours if n.startswith("perplexity_l")):
        if name in random and ours[name] < ratio * random[name]:
            out.append(f"codebook collapse at level {name.removeprefix('perplexity_l')}: held-back perplexity "
                       f"{ours[name]:.3g} vs {random[name]:.3g} for random codes; SID assignment will pile "
                       f"items onto few code tuples and may run out of suffixes. Train longer (hard codes "
                       f"carry the information only once the temperature has annealed) and keep the "
                       f"codebook tied to the latents (simcit.commitment_weight=0.25 "
                       f"simcit.dead_code_reset=true, as the conf/ presets do).")
    return out


def write_outputs(tokenizer: nn.Module, plan: TokenizerPlan, state: TrainState, final: dict[str, float],
                  plots: dict[str, Any]) -> None:
    """The tokenizer artifact (weights + config + codebooks) and the training history beside it."""
    loc = resolve(plan.artifact_uri, plan.cfg.storage)
    save_artifact(tokenizer, plan.cfg.tokenizer, plan.input_dims, loc,  # type: ignore[arg-type]
                  extra={"steps": state.step, "train_rows": plan.train_rows, "final_metrics": final})
    write_json(loc.child(HISTORY_FILE), {"history": state.history, "final": final, "plots": plots})
    log.info("tokenizer artifact written to %s", loc.uri)
