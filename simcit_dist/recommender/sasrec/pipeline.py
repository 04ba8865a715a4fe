"""Library entry point: train SASRec on Ray, evaluate its best validation epoch, write the run directory.

Run directory (``output``), as the SID model's::

    data/sequences/   per-user sequence table over the catalog's items
    model/            the exported model of the best validation epoch
    item_embeddings/  that model's item embeddings (``embeddings.npy`` + ``ids.npy``), ready for
                      ``jobs/convert.py`` with ``source: embeddings`` (a sequential CF modality)
    metrics.json      data stats, per-epoch history, valid/test metrics (+ most-popular baseline)
    report.md         the same as tables, with the training curves
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict
from typing import Any

from simcit_dist.config_loader import to_dict
from simcit_dist.recommender.evaluation import SPLITS, evaluate_ranker
from simcit_dist.recommender.export import model_dir
from simcit_dist.recommender.pipeline import METRICS_FILE, copy_tree
from simcit_dist.recommender.report import write_run_report
from simcit_dist.recommender.sasrec.config import SasrecConfig
from simcit_dist.recommender.sasrec.item_embeddings import write_item_embeddings
from simcit_dist.recommender.sasrec.items import load_item_catalog
from simcit_dist.recommender.sasrec.ranking import load_sasrec, load_sasrec_ranker
from simcit_dist.recommender.sasrec.training import SasrecJob
from simcit_dist.recommender.sequences import build_sequences
from simcit_dist.recommender.trainer import fit
from simcit_dist.storage import StorageConfig, resolve, write_json
from simcit_dist.train.config import RunSection

log = logging.getLogger(__name__)


def train_and_evaluate_sasrec(interactions: str, catalog: str, cfg: SasrecConfig, output: str, run: RunSection,
                              storage: StorageConfig | None = None) -> dict[str, Any]:
    """Build sequences over ``catalog``'s items, train (resuming ``run.name``), evaluate the best
    epoch on validation and test; returns the metrics.json content."""
    out = resolve(output, storage)
    items = load_item_catalog(catalog, storage)
    sequences = out.child("data", "sequences")
    stats = build_sequences(interactions, items, sequences, cfg.data, storage)
    log.info("SASRec on %d items (%s); sequences: %s", items.num_items, items.version, stats)
    fitted = fit(SasrecJob(cfg, sequences.uri, items.num_items, items.version, storage), run)
    model = out.child("model")
    copy_tree(model_dir(fitted.best), model)
    embeddings = out.child("item_embeddings")
    write_item_embeddings(load_sasrec(model.uri, storage)[0], items.item_ids, embeddings)
    load = functools.partial(load_sasrec_ranker, model.uri, storage, cfg.eval)
    final = evaluate_ranker(load, sequences, cfg.data, cfg.eval, items.num_items, SPLITS)
    report = {"model": "sasrec", "catalog": catalog, "items_version": items.version, "num_items": items.num_items,
              "interactions": interactions, "run": to_dict(run), "checkpoint": fitted.best.uri, "item_embeddings": embeddings.uri,
              "latest_checkpoint": fitted.checkpoint.uri, "selected_epoch": fitted.state.best_epoch or fitted.state.epoch,
              "stopped_early": fitted.state.epoch < cfg.train.epochs, "data": asdict(stats),
              "history": fitted.state.history, **final, "config": to_dict(cfg)}
    write_json(out.child(METRICS_FILE), report)
    heading = (f"# SASRec (ID baseline, full softmax): {run.name}\n\nItem catalog `{catalog}` ({items.num_items} "
               f"items, `{items.version}`); interactions `{interactions}`.\n")
    write_run_report(report, out, cfg.eval.ks, cfg.eval.epoch_metric_k, heading, "mean CE over the catalog")
    log.info("SASRec valid %s | test %s", final["valid"], final["test"])
    return report
