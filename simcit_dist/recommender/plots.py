"""Training curves as a PNG: training loss and validation Recall@K per epoch."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence


def training_curves_png(history: Sequence[Mapping[str, float]], k: int) -> bytes:
    """Two panels over epochs; rendered with the Agg canvas (no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [int(h["epoch"]) for h in history]
    fig = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(fig)
    ax_loss, ax_recall = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss (mean CE per SID position)", title="Training loss")
    key = f"valid/recall@{k}"
    ax_recall.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", color="tab:green")
    ax_recall.set(xlabel="epoch", ylabel=f"Recall@{k}", title=f"Validation Recall@{k}")
    for ax in (ax_loss, ax_recall):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
