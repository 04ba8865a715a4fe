"""Markdown + PNG report of an SID version: counts, quality metrics, and the diff to the previous one."""

from __future__ import annotations

import json
import os

from simcit_dist.report import markdown, plots
from simcit_dist.sids.manifest import SidManifest


def diff_markdown(manifest: SidManifest) -> str:
    diff = manifest.diff
    rows = [{"": k, "items": diff.get(k, 0)} for k in ("added", "removed", "changed", "unchanged",
                                                       "changed_kept_sid", "sid_changed")]
    text = f"### Diff against {manifest.previous or '(none: first version)'}\n\n"
    if not manifest.same_tokenizer and manifest.previous:
        text += ("The tokenizer changed: this is a full re-assignment; `sid_changed` counts items whose SID "
                 "differs from the previous version (the mapping report).\n\n")
    text += markdown.table(rows, ["", "items"])
    drift = diff.get("usage_drift") or {}
    if drift:
        text += "\nPer-level code-usage drift (total-variation distance):\n\n" + markdown.key_value_table(drift)
    return text


def version_markdown(manifest: SidManifest) -> str:
    counts = manifest.counts
    parts = [f"## SID version `{manifest.version}`\n",
             f"{counts.get('items', 0):,} items, {manifest.num_levels} levels x {manifest.codebook_size} codes, "
             f"largest suffix {manifest.max_suffix}, {counts.get('retired_sids', 0):,} retired SIDs in "
             f"quarantine, {counts.get('reassigned_by_capacity', 0):,} items moved by capacity.\n",
             "### Quality over the whole catalog\n\n" + markdown.key_value_table(manifest.metrics),
             diff_markdown(manifest)]
    return "\n".join(parts)


def write_assign_report(manifest: SidManifest, run_dir: str) -> str:
    os.makedirs(run_dir, exist_ok=True)
    text = version_markdown(manifest)
    if manifest.code_counts:
        plots.code_usage(manifest.code_counts, os.path.join(run_dir, "code_usage.png"),
                         f"Code usage per level, {manifest.version}")
        text += "\n" + markdown.image("code_usage.png", "items per codeword, per level")
    with open(os.path.join(run_dir, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump({k: v for k, v in manifest.to_dict().items() if k != "code_counts"}, f, indent=2, sort_keys=True)
    return text
