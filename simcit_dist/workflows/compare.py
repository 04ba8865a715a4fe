"""Compare tokenizers where it matters: the same recommender, data, settings and seeds on SIDs
from each tokenizer (and from SID tables made elsewhere), in one table and one plot.

For every entry: train the tokenizer (SimCIT also gets the co-occurrence pairs as its
behavioural view; the baselines do not use them), assign SIDs to the whole catalog, train and
evaluate the recommender at the item level. Each stage resumes/reuses what a previous run left,
so an interrupted comparison continues where it stopped. Beside the entries, every table has
the ID-based baseline (SASRec with full softmax, ``sasrec``) and most-popular, on the same split. With ``seeds`` the whole comparison runs
once per seed and the table gives each figure's mean ± std over the seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
from typing import Any

import numpy as np

from simcit_dist.assign.external import import_letter_index
from simcit_dist.assign.job import run_assignment
from simcit_dist.config_loader import to_dict
from simcit_dist.recommender.config import RecommenderConfig
from simcit_dist.recommender.pipeline import train_and_evaluate
from simcit_dist.recommender.sasrec.config import SasrecConfig
from simcit_dist.recommender.sasrec.pipeline import train_and_evaluate_sasrec
from simcit_dist.report import markdown, plots
from simcit_dist.sids.manifest import SidManifest
from simcit_dist.storage import StorageConfig, exists, read_json, resolve, write_bytes, write_text
from simcit_dist.tokenizer_training.config import TokenizerJobConfig, TokenizerRunSection
from simcit_dist.tokenizer_training.job import run_tokenizer_training
from simcit_dist.tokenizer_training.report import write_tokenizer_report
from simcit_dist.workflows.config import CompareJobConfig
from simcit_dist.workflows.seed_summary import STD, aggregate_seeds, per_seed_table, seed_table

log = logging.getLogger(__name__)
METRIC_KS = (5, 10, 20)
SASREC_ROW = "SASRec (item IDs, full softmax)"
# "valid Recall@10" is what every choice between rows is made on; the others are test metrics.
COLUMNS = ["tokenizer", "kind", "valid Recall@10", *[f"{m}@{k}" for m in ("Recall", "NDCG") for k in METRIC_KS], "collision",
           "Gini", "perplexity (mean/level)", "max suffix", "tokenizer steps", "tokenizer epochs", "test users"]


def _tokenizer_sids(cfg: CompareJobConfig, name: str, out: str, pair_views: str
                    ) -> tuple[SidManifest, dict[str, float]]:
    tok = cfg.tokenizers[name]
    data = dataclasses.replace(cfg.data, catalog=cfg.catalog, pairs=cfg.pairs if tok.kind == "simcit" else None,
                               pair_views=pair_views)
    job = TokenizerJobConfig(data=data, tokenizer=tok, train=cfg.train,
                             run=TokenizerRunSection(storage_path=f"{cfg.output}/ray", name=f"tokenizer-{name}",
                                            run_dir=f"{out}/tokenizer"), storage=cfg.storage)
    result = run_tokenizer_training(job)
    write_tokenizer_report(result, job.run.run_dir, f"Tokenizer {name} ({tok.kind})")
    assign = dataclasses.replace(cfg.assign, catalog=cfg.catalog, tokenizer=result.artifact_uri, output=f"{out}/sids",
                                 previous=None, run_dir=f"{out}/assign", storage=cfg.storage)
    trained = {"tokenizer steps": result.steps, "tokenizer epochs": round(result.epochs, 2)}
    return run_assignment(assign).manifest, trained


def _entry(cfg: CompareJobConfig, name: str, pair_views: str) -> dict[str, Any]:
    out = f"{cfg.output}/{name}"
    if name in cfg.external:
        manifest = import_letter_index(cfg.external[name], f"{out}/sids", cfg.storage, cfg.assign.max_suffix)
        kind, trained = "external", dict[str, float]()
    else:
        manifest, trained = _tokenizer_sids(cfg, name, out, pair_views)
        kind = cfg.tokenizers[name].kind
    rc = cfg.recommender
    # One recommender run per SID version: a re-run on the same SIDs resumes it, new SIDs (a retrained
    # tokenizer, another external table) start a fresh run instead of failing to resume the old one.
    version = manifest.version
    run = dataclasses.replace(rc.run, storage_path=f"{cfg.output}/ray", name=f"recommender-{name}-{version}")
    recommender = rc.recommender()
    report = _finished(f"{out}/recommender", version, recommender, cfg.storage)
    if report is None:
        report = train_and_evaluate(cfg.interactions, f"{out}/sids", recommender, f"{out}/recommender", run,
                                    cfg.storage)
    return _row(name, kind, manifest, report, trained)


def _finished(output: str, sid_version: str | None, recommender: RecommenderConfig | SasrecConfig,
              storage: StorageConfig) -> dict[str, Any] | None:
    """The metrics of an earlier run of this entry on the same SIDs (``None``: no SIDs, SASRec) and
    settings, if any: a re-run after a later entry failed skips the evaluation (minutes at catalog scale)."""
    metrics = resolve(output, storage).child("metrics.json")
    if not exists(metrics):
        return None
    report = read_json(metrics)
    settings = json.loads(json.dumps(to_dict(recommender)))  # as metrics.json holds them
    if report.get("sid_version") != sid_version or report.get("config") != settings:
        return None
    log.info("reusing the finished recommender run in %s (SID version %s)", output, sid_version)
    return report


def sasrec_config(cfg: CompareJobConfig) -> SasrecConfig:
    """SASRec on the recommender's split and evaluation, with its own model, history and training."""
    rc = cfg.recommender
    return SasrecConfig(model=cfg.sasrec.model,
                        data=dataclasses.replace(rc.data, max_history=cfg.sasrec.max_history),
                        train=dataclasses.replace(cfg.sasrec.train, seed=rc.train.seed), eval=rc.eval)


def _sasrec_row(cfg: CompareJobConfig) -> dict[str, Any]:
    """The ID-baseline row: SASRec trained (or its finished run reused) on the same interactions."""
    sasrec = sasrec_config(cfg)
    inputs = {"interactions": cfg.interactions, "catalog": cfg.catalog}
    settings = json.dumps({**inputs, "config": to_dict(sasrec)}, sort_keys=True, default=str)
    # One run per inputs and settings: a change starts a fresh run instead of resuming a finished one.
    run = dataclasses.replace(cfg.recommender.run, storage_path=f"{cfg.output}/ray",
                              name=f"sasrec-{hashlib.sha1(settings.encode()).hexdigest()[:10]}")
    out = f"{cfg.output}/sasrec"
    report = _finished(out, None, sasrec, cfg.storage)
    if report is None or {k: report.get(k) for k in inputs} != inputs:
        report = train_and_evaluate_sasrec(cfg.interactions, cfg.catalog, sasrec, out, run, cfg.storage)
    test = report["test"]
    row: dict[str, Any] = {"tokenizer": SASREC_ROW, "kind": "baseline"}
    row.update({f"{m}@{k}": test.get(f"{m.lower()}@{k}", float("nan")) for m in ("Recall", "NDCG")
                for k in METRIC_KS})
    row["test users"] = test.get("count")
    row["valid Recall@10"] = report["valid"].get("recall@10", float("nan"))
    return row


def _row(name: str, kind: str, manifest: SidManifest, report: dict[str, Any],
         trained: dict[str, float]) -> dict[str, Any]:
    """One table row; ``trained``: the steps and epochs the tokenizer actually trained (none: external)."""
    test = report["test"]
    m = manifest.metrics
    ppl = [v for k, v in m.items() if k.startswith("perplexity_l")]
    row: dict[str, Any] = {"tokenizer": name, "kind": kind,
                           "valid Recall@10": report["valid"].get("recall@10", float("nan"))}
    for k in METRIC_KS:
        row[f"Recall@{k}"] = test.get(f"recall@{k}", float("nan"))
        row[f"NDCG@{k}"] = test.get(f"ndcg@{k}", float("nan"))
    row.update({"collision": m.get("collision_rate", float("nan")), "Gini": m.get("gini", float("nan")),
                "perplexity (mean/level)": float(np.mean(ppl)) if ppl else float("nan"),
                "max suffix": manifest.max_suffix, "tokenizer steps": trained.get("tokenizer steps", float("nan")),
                "tokenizer epochs": trained.get("tokenizer epochs", float("nan")), "test users": test.get("count")})
    row["_popular"] = {f"Recall@{k}": test.get(f"popular/recall@{k}") for k in METRIC_KS} | {
        f"NDCG@{k}": test.get(f"popular/ndcg@{k}") for k in METRIC_KS} | {
        "valid Recall@10": report["valid"].get("popular/recall@10")}
    return row


def run_comparison(cfg: CompareJobConfig, command: str = "") -> str:
    """Run every entry (once per seed of ``cfg.seeds``); write ``comparison.{md,json,png}`` under
    ``cfg.output``; returns the markdown table. ``command`` (the job's command line) is recorded
    with every row of ``comparison.json``: the command that reproduces it."""
    pair_views = f"{cfg.output}/pair_views"  # seed-independent: one join serves every seed
    if not cfg.seeds:
        return write_comparison(cfg, _run_entries(cfg, pair_views, command))
    rows_by_seed: dict[int, list[dict[str, Any]]] = {}
    text = ""
    for seed in cfg.seeds:
        log.info("=== comparison seed %d (%d of %d) ===", seed, len(rows_by_seed) + 1, len(cfg.seeds))
        rows_by_seed[seed] = _run_entries(with_seed(cfg, seed), pair_views, command)
        text = write_seed_comparison(cfg, rows_by_seed)  # the seeds so far survive a later failure
    return text


def with_seed(cfg: CompareJobConfig, seed: int) -> CompareJobConfig:
    """``cfg`` for one seed: every seed it holds set to ``seed`` (data order, tokenizer init,
    dead-code resets and k-means; the recommender's init, dropout and batch order), its output under
    ``<output>/seed-<seed>``."""
    tokenizers = {name: dataclasses.replace(tok, simcit=dataclasses.replace(tok.simcit, seed=seed),
                                            rqvae=dataclasses.replace(tok.rqvae, seed=seed),
                                            rqkmeans=dataclasses.replace(tok.rqkmeans, seed=seed))
                  for name, tok in cfg.tokenizers.items()}
    recommender = dataclasses.replace(cfg.recommender,
                                      train=dataclasses.replace(cfg.recommender.train, seed=seed))
    return dataclasses.replace(cfg, tokenizers=tokenizers, data=dataclasses.replace(cfg.data, seed=seed),
                               recommender=recommender, output=f"{cfg.output}/seed-{seed}",
                               title=f"{cfg.title} (seed {seed})", seeds=[])


def _run_entries(cfg: CompareJobConfig, pair_views: str, command: str = "") -> list[dict[str, Any]]:
    rows = []
    for name in [*cfg.tokenizers, *cfg.external]:
        log.info("=== comparison entry %s ===", name)
        rows.append({**_entry(cfg, name, pair_views), "command": command})
        write_comparison(cfg, rows)  # partial results survive a failure in a later entry
    if cfg.sasrec.enabled:
        log.info("=== comparison baseline: SASRec ===")
        sasrec = {**_sasrec_row(cfg), "command": command}
        rows = [{**r, "_sasrec": sasrec} for r in rows]
        write_comparison(cfg, rows)
    return rows


def _table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries' rows plus the baselines on the same split: SASRec (when run) and most-popular."""
    if not rows:
        return []
    baselines = [rows[0]["_sasrec"]] if "_sasrec" in rows[0] else []
    baselines.append({"tokenizer": "most popular", "kind": "baseline", **rows[0]["_popular"],
                      "command": rows[0].get("command", "")})
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows] + baselines


def write_comparison(cfg: CompareJobConfig, rows: list[dict[str, Any]]) -> str:
    table_rows = _table_rows(rows)
    text = f"## {cfg.title}\n\n" + markdown.table(table_rows, COLUMNS)
    _write_outputs(cfg, text, table_rows, {}, cfg.title)
    return text


def write_seed_comparison(cfg: CompareJobConfig, rows_by_seed: dict[int, list[dict[str, Any]]]) -> str:
    """The mean ± std table over the seeds run so far, and Recall@10 of each seed."""
    per_seed = {seed: _table_rows(rows) for seed, rows in rows_by_seed.items()}
    aggregated = aggregate_seeds(per_seed)
    seeds = ", ".join(str(s) for s in per_seed)
    text = (f"## {cfg.title}: mean ± std over seeds {seeds}\n\n" + seed_table(aggregated, COLUMNS[2:-1])
            + "\nRecall@10 of each seed:\n\n" + per_seed_table(per_seed, "Recall@10"))
    errors = {f"Recall@{k}": [float(np.nan_to_num(r.get(f"Recall@{k}{STD}", 0.0))) for r in aggregated]
              for k in METRIC_KS}
    _write_outputs(cfg, text, aggregated, errors, f"{cfg.title}\nmean ± std over seeds {seeds}")
    return text


def _write_outputs(cfg: CompareJobConfig, text: str, table_rows: list[dict[str, Any]],
                   errors: dict[str, list[float]], plot_title: str) -> None:
    """``comparison.md`` (text + plot), ``comparison.json`` (the rows) and ``comparison.png``
    (Recall@K bars, with ± std error bars when given)."""
    out = resolve(cfg.output, cfg.storage)
    write_text(out.child("comparison.md"), text + "\n" + markdown.image("comparison.png", "test Recall@K"))
    write_bytes(out.child("comparison.json"), json.dumps(table_rows, indent=2, default=float).encode())
    with tempfile.TemporaryDirectory() as tmp:
        png = plots.grouped_bars([r["tokenizer"] for r in table_rows],
                                 {f"Recall@{k}": [float(r.get(f"Recall@{k}") or 0) for r in table_rows]
                                  for k in METRIC_KS}, f"{tmp}/comparison.png", plot_title, "test Recall@K (item level)",
                                 errors=errors or None)
        with open(png, "rb") as f:
            write_bytes(out.child("comparison.png"), f.read())
