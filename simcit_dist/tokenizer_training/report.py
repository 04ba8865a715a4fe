"""The tokenizer run's report in its run directory: metrics.json, report.md and PNG plots."""

from __future__ import annotations

import json
import os

from simcit_dist.report import markdown, plots
from simcit_dist.tokenizer_training.plan import TokenizerRunResult


def write_tokenizer_report(result: TokenizerRunResult, run_dir: str, title: str = "Tokenizer training") -> str:
    """Write the report files; returns the markdown (also saved as ``report.md``)."""
    os.makedirs(run_dir, exist_ok=True)
    metrics = {"artifact": result.artifact_uri, "steps": result.steps, "epochs": result.epochs,
               "final": result.final_metrics, "history": result.history}
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
    trained = f"{result.steps} steps ({result.epochs:.2f} epochs)" if result.epochs else f"{result.steps} steps"
    parts = [f"# {title}\n", f"Artifact: `{result.artifact_uri}` after {trained}.\n"]
    if result.history:
        plots.training_curves(result.history, os.path.join(run_dir, "training_curves.png"), title)
        parts.append(markdown.image("training_curves.png", "loss, perplexity and temperature over steps"))
        last = result.history[-1]
        parts.append("\n## Last logged step\n\n" + markdown.key_value_table(
            {k: v for k, v in sorted(last.items())}))
    rows = _holdout_rows(result.final_metrics)
    if rows:
        parts.append("\n## SID quality on held-back items\n\nThe trained tokenizer beside the same model "
                     "before training (codebooks initialised) and uniformly random codes.\n\n")
        parts.append(markdown.table(rows, ["metric", "trained", "untrained", "random codes"]))
    if result.plots.get("code_counts"):
        plots.code_usage(result.plots["code_counts"], os.path.join(run_dir, "code_usage.png"))
        parts.append("\n" + markdown.image("code_usage.png", "items per codeword, per level"))
    if result.plots.get("projection"):
        proj = result.plots["projection"]
        plots.latent_projection(proj["xy"], proj["c1"], os.path.join(run_dir, "latent_pca.png"))
        parts.append(markdown.image("latent_pca.png", "2-D PCA of item latents coloured by first-level code"))
    text = "\n".join(parts)
    with open(os.path.join(run_dir, "report.md"), "w") as f:
        f.write(text)
    return text


def _holdout_rows(final: dict[str, float]) -> list[dict[str, object]]:
    names = sorted(k.split("/", 1)[1] for k in final if k.startswith("holdout/") and k != "holdout/items")
    nan = float("nan")
    return [{"metric": n, "trained": final[f"holdout/{n}"], "untrained": final.get(f"holdout_untrained/{n}", nan),
             "random codes": final.get(f"holdout_random/{n}", nan)} for n in names]
