"""The recommender run's report beside metrics.json: report.md and the training-curve PNGs.

Uses the project's plot and markdown helpers (``simcit_dist.report``), which write local files;
they are rendered in a temp dir and copied through the storage layer, so ``output`` may be S3.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from simcit_dist.report import markdown, plots
from simcit_dist.storage import Location, read_bytes, resolve, write_bytes, write_text

LOSS_PNG = "training_loss.png"
RECALL_PNG = "valid_recall.png"


def metric_rows(results: Mapping[str, Mapping[str, float]], ks: Sequence[int]) -> list[dict[str, Any]]:
    """One row per split: Recall/NDCG@K of the model and of the most-popular baseline."""
    rows = []
    for split, m in results.items():
        row: dict[str, Any] = {"split": split, "examples": int(m["count"])}
        for k in ks:
            row[f"Recall@{k}"] = m[f"recall@{k}"]
            row[f"NDCG@{k}"] = m[f"ndcg@{k}"]
            row[f"popular Recall@{k}"] = m[f"popular/recall@{k}"]
        rows.append(row)
    return rows


def write_run_report(report: Mapping[str, Any], out: Location, ks: Sequence[int], k: int,
                     heading: str | None = None, loss_label: str = "mean CE per SID position") -> str:
    """Write ``report.md`` and the curves under ``out``; returns the markdown. ``heading``: the title
    and inputs line (default: the SID model's)."""
    history = report.get("history", [])
    parts = [heading or (f"# Generative recommender: {report['run']['name']}\n\n"
                         f"SID table `{report['sid_root']}` version `{report['sid_version']}`; interactions "
                         f"`{report['interactions']}`.\n")]
    data = report["data"]
    parts.append("\n## Data\n\n" + markdown.key_value_table({
        "interactions": data["interactions"], "interactions without SID (excluded)": data["interactions_missing_sid"],
        "sample of item ids without SID": str(data["missing_item_sample"][:10]), "users": data["users"],
        "users kept": data["users_kept"], **{f"{s} examples": n for s, n in data["examples"].items()}}))
    parts.append("\n## Test and validation (item level, full catalog)\n\n")
    parts.append(markdown.table(metric_rows({s: report[s] for s in ("valid", "test") if s in report}, ks)))
    if history:
        epochs = [h["epoch"] for h in history]
        chosen = report.get("selected_epoch")
        mark = (float(chosen), f"selected: epoch {chosen}") if chosen else None
        with tempfile.TemporaryDirectory() as tmp:
            plots.series(epochs, {"train": [h["train_loss"] for h in history]}, os.path.join(tmp, LOSS_PNG),
                         "Training loss", "epoch", loss_label, mark=mark)
            plots.series(epochs, {"valid": [h[f"valid/recall@{k}"] for h in history]},
                         os.path.join(tmp, RECALL_PNG), f"Validation Recall@{k}", "epoch", f"Recall@{k}", mark=mark)
            for name in (LOSS_PNG, RECALL_PNG):
                write_bytes(out.child(name), read_bytes(resolve(os.path.join(tmp, name))))
        stop = " (stopped early: no validation gain within train.patience)" if report.get("stopped_early") else ""
        parts.append(f"\n## Training\n\nSelected epoch **{chosen}** of {len(history)}{stop}: the best validation "
                     f"Recall@{k}; the test metrics above are of its checkpoint.\n\n"
                     + markdown.image(LOSS_PNG, "training loss per epoch")
                     + markdown.image(RECALL_PNG, f"validation Recall@{k} per epoch"))
        parts.append(markdown.table([{"epoch": h["epoch"], "step": h["global_step"], "loss": h["train_loss"],
                                      f"valid Recall@{k}": h[f"valid/recall@{k}"], "seconds": h["seconds"]}
                                     for h in history]))
    text = "\n".join(parts)
    write_text(out.child("report.md"), text)
    return text
