"""Plots a person would rather look at than read: training curves, code usage, latent maps.

Matplotlib with the Agg backend (no display); each function writes one PNG and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig: Any, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _legend(ax: Any) -> None:
    """A legend when the panel has labelled lines; otherwise say so (an entry without a training
    history, e.g. RQ-KMeans, has nothing to plot and matplotlib would warn on an empty legend)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="gray")


def training_curves(history: Sequence[Mapping[str, float]], path: str, title: str = "Tokenizer training") -> str:
    """Loss (total and per view) and per-level codebook perplexity over steps, plus the
    Gumbel temperature: the SimCIT paper's training-dynamics figure."""
    steps = [h["step"] for h in history]
    keys = sorted({k for h in history for k in h})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for k in [k for k in keys if k == "loss" or k.startswith("loss_")]:
        axes[0].plot(steps, [h.get(k, np.nan) for h in history], label=k, lw=2 if k == "loss" else 1)
    axes[0].set(title="contrastive loss", xlabel="step")
    _legend(axes[0])
    for k in [k for k in keys if k.startswith(("perplexity", "ppl"))]:
        axes[1].plot(steps, [h.get(k, np.nan) for h in history], label=k)
    axes[1].set(title="codebook perplexity per level (batch)", xlabel="step", yscale="log")
    _legend(axes[1])
    for k in [k for k in keys if k in ("temperature", "lr")]:
        axes[2].plot(steps, [h.get(k, np.nan) for h in history], label=k)
    axes[2].set(title="schedules", xlabel="step", yscale="log")
    _legend(axes[2])
    fig.suptitle(title)
    return _save(fig, path)


def code_usage(counts: Sequence[Sequence[int]], path: str, title: str = "Code usage per level") -> str:
    """Histogram of items per codeword (sorted by frequency), one panel per level."""
    levels = len(counts)
    fig, axes = plt.subplots(1, levels, figsize=(4.5 * levels, 3.5), squeeze=False)
    for level, c in enumerate(counts):
        arr = np.sort(np.asarray(c))[::-1]
        used = int((arr > 0).sum())
        axes[0][level].bar(np.arange(len(arr)), arr, width=1.0)
        axes[0][level].set(title=f"level {level + 1}: {used}/{len(arr)} codes used", xlabel="codeword (by rank)",
                           ylabel="items")
    fig.suptitle(title)
    return _save(fig, path)


def latent_projection(xy: Sequence[Sequence[float]], labels: Sequence[int], path: str,
                      title: str = "Item latents (PCA), coloured by first-level code") -> str:
    pts = np.asarray(xy, dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if len(pts):
        ax.scatter(pts[:, 0], pts[:, 1], c=np.asarray(labels) % 20, cmap="tab20", s=4, alpha=0.7)
    ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    return _save(fig, path)


def series(x: Sequence[float], ys: Mapping[str, Sequence[float]], path: str, title: str, xlabel: str,
           ylabel: str = "", logy: bool = False, mark: tuple[float, str] | None = None) -> str:
    """A generic line plot (recommender curves, benchmark scaling); ``mark`` = (x, label) draws a
    labelled vertical line (e.g. the selected epoch)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, y in ys.items():
        ax.plot(x, y, marker="o", label=name)
    if mark is not None:
        ax.axvline(mark[0], color="grey", linestyle="--", label=mark[1])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, yscale="log" if logy else "linear")
    ax.legend(fontsize=8)
    return _save(fig, path)


def grouped_bars(groups: Sequence[str], values: Mapping[str, Sequence[float]], path: str, title: str,
                 ylabel: str, errors: Mapping[str, Sequence[float]] | None = None) -> str:
    """Bars per group (e.g. Recall@K per tokenizer), with ± error bars (e.g. a std over seeds) when given."""
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(values))
    for i, (name, vals) in enumerate(values.items()):
        ax.bar(np.arange(len(groups)) + i * width, vals, width, label=name,
               yerr=(errors or {}).get(name), capsize=3 if errors else 0)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups)
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=8)
    return _save(fig, path)
