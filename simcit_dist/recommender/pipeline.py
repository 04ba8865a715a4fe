"""Library entry points: train + evaluate a recommender on one SID table; evaluate a trained one.

Both take URIs and configs and return metrics, so a comparison job can loop over SID tables.
Run directory (``output``)::

    data/sequences/     per-user sequence table (+ manifest.json with counts of dropped interactions)
    model/              exported model of the last epoch (model.pt + config.json)
    metrics.json        data stats, per-epoch history, final valid/test metrics (+ popularity baseline)
    report.md           the same as tables, with training_loss.png and valid_recall.png (per epoch)
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from simcit_dist.config_loader import to_dict
from simcit_dist.recommender.catalog import load_catalog
from simcit_dist.recommender.config import DataConfig, EvalConfig, RecommenderConfig
from simcit_dist.recommender.evaluation import SPLITS, evaluate_model
from simcit_dist.recommender.export import load_meta, model_dir
from simcit_dist.recommender.report import write_run_report
from simcit_dist.recommender.sequences import build_sequences
from simcit_dist.recommender.trainer import WorkerJob, fit
from simcit_dist.sids.table import resolve_version
from simcit_dist.storage import (
    Location,
    StorageConfig,
    copy_file,
    list_files,
    make_dir,
    resolve,
    write_json,
)
from simcit_dist.train.config import RunSection

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def train_and_evaluate(interactions: str, sid_root: str, cfg: RecommenderConfig, output: str, run: RunSection,
                       storage: StorageConfig | None = None, sid_version: str | None = None) -> dict[str, Any]:
    """Build sequences, train on Ray (resuming ``run.name`` if it has checkpoints), evaluate on
    validation and test, write the run directory; returns the metrics.json content."""
    out = resolve(output, storage)
    _, manifest = resolve_version(sid_root, storage, sid_version)
    version = manifest.version  # pinned: LATEST may move while we run
    catalog = load_catalog(sid_root, storage, version)
    sequences = out.child("data", "sequences")
    stats = build_sequences(interactions, catalog, sequences, cfg.data, storage)
    log.info("sequences: %s", stats)
    fitted = fit(WorkerJob(cfg, sequences.uri, sid_root, version, storage), run)
    model = out.child("model")
    copy_tree(model_dir(fitted.best), model)  # the best validation epoch, not the last one
    final = evaluate_model(model.uri, sequences, sid_root, cfg.eval, storage, SPLITS, cfg.data, version)
    report = {"sid_root": sid_root, "sid_version": version, "interactions": interactions, "run": to_dict(run),
              "checkpoint": fitted.best.uri, "latest_checkpoint": fitted.checkpoint.uri,
              "selected_epoch": fitted.state.best_epoch or fitted.state.epoch,
              "stopped_early": fitted.state.epoch < cfg.train.epochs, "data": asdict(stats),
              "history": fitted.state.history,
              **final, "config": to_dict(cfg)}
    write_json(out.child(METRICS_FILE), report)
    write_run_report(report, out, cfg.eval.ks, cfg.eval.epoch_metric_k)
    log.info("valid %s | test %s", final["valid"], final["test"])
    return report


def evaluate_trained(model_uri: str, interactions: str, sid_root: str, output: str, cfg: EvalConfig,
                     storage: StorageConfig | None = None, splits: Sequence[str] = SPLITS,
                     data: DataConfig | None = None, sid_version: str | None = None,
                     sequences: str | None = None) -> dict[str, Any]:
    """Evaluate an exported model (or checkpoint) on ``splits``; writes ``<output>/metrics.json``.

    ``sequences`` reuses a sequence table built earlier from the same interactions and SID
    version (the training run's ``data/sequences``); otherwise one is built under ``output``.
    """
    out = resolve(output, storage)
    meta = load_meta(model_uri, storage)
    data = data or meta.data
    version = sid_version or meta.sid_version
    catalog = load_catalog(sid_root, storage, version)
    table = resolve(sequences, storage) if sequences else out.child("data", "sequences")
    stats = build_sequences(interactions, catalog, table, data, storage, rebuild=sequences is None)
    final = evaluate_model(model_uri, table, sid_root, cfg, storage, splits, data, version)
    report = {"model": model_uri, "sid_root": sid_root, "sid_version": version, "interactions": interactions,
              "data": asdict(stats), **final, "eval": to_dict(cfg)}
    write_json(out.child(METRICS_FILE), report)
    return report


def copy_tree(src: Location, dst: Location) -> None:
    for f in list_files(src):
        target = dst.child(posixpath.relpath(f.path, src.path))
        make_dir(Location(target.fs, posixpath.dirname(target.path), target.uri))  # local copies need the dir
        copy_file(f, target)
