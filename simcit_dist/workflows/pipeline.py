"""The whole pipeline under one run directory (``make demo``): generate -> prepare -> train the
tokenizer -> assign SIDs -> simulate the next day and re-tokenize -> train and evaluate the
recommender. Each stage is the same library call its own job makes; this module only wires
outputs to inputs and collects one ``report.md`` + ``metrics.json``.

Re-running resumes: tokenizer and recommender training continue from their last checkpoints,
SID assignment finds its already-published versions, so a finished demo re-runs in minutes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simcit_dist.assign.job import run_assignment
from simcit_dist.assign.report import write_assign_report
from simcit_dist.config_loader import to_dict
from simcit_dist.inputs.generate import generate_synthetic
from simcit_dist.inputs.next_day import simulate_next_day
from simcit_dist.inputs.prepare import prepare_data
from simcit_dist.recommender.pipeline import train_and_evaluate
from simcit_dist.report import markdown
from simcit_dist.sids.manifest import SidManifest
from simcit_dist.tokenizer_training.config import TokenizerRunSection
from simcit_dist.tokenizer_training.job import run_tokenizer_training
from simcit_dist.tokenizer_training.report import write_tokenizer_report
from simcit_dist.workflows.config import PipelineConfig

log = logging.getLogger(__name__)


class _Paths:
    def __init__(self, run_dir: str) -> None:
        self.root = os.path.abspath(run_dir)
        self.data = f"{self.root}/data/synthetic"
        self.prepared = f"{self.root}/data/prepared"
        self.day2 = f"{self.root}/data/day2/catalog"
        self.ray = f"{self.root}/ray"
        self.sids = f"{self.root}/sids"

    def stage(self, name: str) -> str:
        return f"{self.root}/{name}"


def wire(cfg: PipelineConfig) -> PipelineConfig:
    """Each stage's config with its inputs and outputs placed under ``cfg.run_dir``."""
    p = _Paths(cfg.run_dir)
    rep = dataclasses.replace
    st = cfg.storage
    generate = rep(cfg.generate, output=p.data, storage=st)
    prepare = rep(cfg.prepare, catalog=f"{p.data}/catalog", pairs=f"{p.data}/pairs",
                  interactions=f"{p.data}/interactions", output=p.prepared, run_dir=p.stage("prepare"), storage=st)
    tok = cfg.tokenizer
    tokenizer = rep(tok, data=rep(tok.data, catalog=f"{p.prepared}/catalog", pairs=f"{p.prepared}/pairs",
                                  pair_views=None),
                    run=TokenizerRunSection(storage_path=p.ray, name=tok.run.name, run_dir=p.stage("tokenizer")), storage=st)
    assign = rep(cfg.assign, catalog=f"{p.prepared}/catalog", tokenizer=tokenizer.run.artifact_uri(), output=p.sids,
                 previous=None, run_dir=p.stage("assign"), storage=st)
    rec = cfg.recommender
    recommender = rep(rec, interactions=f"{p.prepared}/interactions", sid_root=p.sids, sid_version=None,
                      output=p.stage("recommender"), run=rep(rec.run, storage_path=p.ray), storage=st)
    return rep(cfg, generate=generate, prepare=prepare, tokenizer=tokenizer, assign=assign, recommender=recommender)


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run the configured stages in order; returns (and writes) the combined metrics."""
    cfg = wire(cfg)
    p = _Paths(cfg.run_dir)
    os.makedirs(p.root, exist_ok=True)
    results: dict[str, Any] = {"config": to_dict(cfg), "stages": {}}
    sections: list[str] = []
    stages: dict[str, Callable[[PipelineConfig, _Paths], tuple[dict[str, Any], str]]] = {
        "generate": _generate, "prepare": _prepare, "tokenizer": _tokenizer, "assign": _assign,
        "retokenize": _retokenize, "recommender": _recommender,
    }
    for name in cfg.stages:
        start = time.time()
        log.info("=== stage %s ===", name)
        metrics, section = stages[name](cfg, p)
        metrics["seconds"] = round(time.time() - start, 1)
        results["stages"][name] = metrics
        sections.append(f"## {name} ({metrics['seconds']} s)\n\n{section}")
        _write(p.root, results, sections)  # a partial report survives a failed later stage
    log.info("demo report: %s/report.md", p.root)
    return results


def _write(root: str, results: dict[str, Any], sections: list[str]) -> None:
    with open(f"{root}/metrics.json", "w") as f:
        json.dump(results, f, indent=2, sort_keys=True, default=str)
    head = ("# simcit_dist demo run\n\nEvery stage of the pipeline on a small synthetic catalog, local Ray and "
            "local storage. Stage directories hold each stage's own report and plots.\n\n")
    Path(f"{root}/report.md").write_text(head + "\n\n".join(sections) + "\n")


def _generate(cfg: PipelineConfig, p: _Paths) -> tuple[dict[str, Any], str]:
    g = cfg.generate
    r = generate_synthetic(g.data, g.output, g.storage, g.num_tasks, g.with_pairs, g.with_interactions)
    metrics = dataclasses.asdict(r)
    return metrics, markdown.key_value_table({k: v for k, v in metrics.items() if k != "output"})


def _prepare(cfg: PipelineConfig, p: _Paths) -> tuple[dict[str, Any], str]:
    report = prepare_data(cfg.prepare)
    summary = report.to_dict()
    rows = [{"table": name, "input rows": t.input_rows, "output rows": t.output_rows, "rejected": t.rejected_rows,
             "reasons": ", ".join(f"{r}: {n}" for r, n in sorted(t.rejected.items())) or "–"}
            for name, t in sorted(report.tables.items())]
    return summary, markdown.table(rows) + f"\nRejects and summary: `{cfg.prepare.run_dir}`\n"


def _tokenizer(cfg: PipelineConfig, p: _Paths) -> tuple[dict[str, Any], str]:
    result = run_tokenizer_training(cfg.tokenizer)
    write_tokenizer_report(result, cfg.tokenizer.run.run_dir, f"Tokenizer training ({cfg.tokenizer.tokenizer.kind})")
    images = "".join(markdown.image(f"tokenizer/{name}", name) for name in
                     ("training_curves.png", "code_usage.png", "latent_pca.png")
                     if os.path.exists(f"{cfg.tokenizer.run.run_dir}/{name}"))
    final = result.final_metrics
    keys = sorted(k.split("/", 1)[1] for k in final if k.startswith("holdout/") and k != "holdout/items")
    rows = [{"metric": k, "trained": final[f"holdout/{k}"], "untrained": final.get(f"holdout_untrained/{k}"),
             "random codes": final.get(f"holdout_random/{k}")} for k in keys]
    text = (f"{result.steps} steps; artifact `{result.artifact_uri}`; full report: [tokenizer/report.md]"
            f"(tokenizer/report.md)\n\n{images}\nHeld-back items:\n\n{markdown.table(rows)}")
    return {"steps": result.steps, "artifact": result.artifact_uri, "final": final}, text


def _assign(cfg: PipelineConfig, p: _Paths) -> tuple[dict[str, Any], str]:
    result = run_assignment(cfg.assign)
    text = write_assign_report(result.manifest, cfg.assign.run_dir)
    return _manifest_summary(result.manifest), text.replace("code_usage.png", "assign/code_usage.png")


def _retokenize(cfg: PipelineConfig, p: _Paths) -> tuple[dict[str, Any], str]:
    counts = simulate_next_day(f"{p.prepared}/catalog", p.day2, cfg.next_day, cfg.generate.data, cfg.storage)
    nightly = dataclasses.replace(cfg.assign, catalog=p.day2, previous="LATEST", run_dir=p.stage("retokenize"))
    result = run_assignment(nightly)
    text = write_assign_report(result.manifest, nightly.run_dir)
    intro = (f"Simulated next-day snapshot: {counts['removed']} removed, {counts['changed']} changed, "
             f"{counts['added']} added; re-tokenized against the previous version.\n\n")
    return {"next_day": counts, **_manifest_summary(result.manifest)}, intro + text.replace(
        "code_usage.png", "retokenize/code_usage.png")


def _manifest_summary(manifest: SidManifest) -> dict[str, Any]:
    data = manifest.to_dict()
    return {k: data[k] for k in ("version", "previous", "counts", "metrics", "diff", "max_suffix")}


def _recommender(cfg: PipelineConfig, p: _Paths) -> tuple[dict[str, Any], str]:
    rc = cfg.recommender
    report = train_and_evaluate(rc.interactions, rc.sid_root, rc.recommender(), rc.output, rc.run, rc.storage,
                                rc.sid_version)
    rows = []
    for split in ("valid", "test"):
        m = report[split]
        for k in rc.eval.ks:
            rows.append({"split": split, "K": k, "Recall": m[f"recall@{k}"], "NDCG": m[f"ndcg@{k}"],
                         "most-popular Recall": m.get(f"popular/recall@{k}"),
                         "most-popular NDCG": m.get(f"popular/ndcg@{k}")})
    data = report["data"]
    text = (f"SID version `{report['sid_version']}`; {data['interactions']:,} interactions of {data['users']:,} users, "
            f"{data['interactions_missing_sid']:,} of them on items without a SID (removed on day 2: reported and "
            f"excluded, e.g. item_id {data['missing_item_sample'][:5]}); examples {data['examples']}. "
            f"Full report: [recommender/report.md](recommender/report.md)\n\n" + markdown.table(rows) + "\n"
            + markdown.image("recommender/training_loss.png", "training loss")
            + markdown.image("recommender/valid_recall.png", "validation Recall@10 per epoch"))
    return {k: report[k] for k in ("sid_version", "valid", "test", "data")}, text
