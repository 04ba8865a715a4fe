"""Train SASRec (the ID-based baseline: full softmax cross-entropy over the catalog) on Ray Train +
DeepSpeed, validate each epoch, test the best epoch; writes metrics.json, report.md (+ curves) and the
exported model to `output`.

    python jobs/train_sasrec.py --config conf/sasrec_beauty.yaml [train.epochs=50 run.name=my-run]

Re-running with the same run.name (and run.storage_path) resumes from the latest checkpoint.
"""

from __future__ import annotations

import logging

from _common import init_ray, log_split_metrics, parse, run_main

from simcit_dist.recommender.sasrec.config import TrainSasrecJobConfig
from simcit_dist.recommender.sasrec.pipeline import train_and_evaluate_sasrec

CONFIG_CLASS = TrainSasrecJobConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", TrainSasrecJobConfig, "conf/sasrec_beauty.yaml")
    init_ray(args.num_cpus)
    report = train_and_evaluate_sasrec(cfg.interactions, cfg.catalog, cfg.sasrec(), cfg.output, cfg.run, cfg.storage)
    log_split_metrics("train_sasrec", report, cfg.eval.epoch_metric_k)
    log = logging.getLogger("train_sasrec")
    log.info("run directory: %s (selected epoch %d)", cfg.output, report["selected_epoch"])


if __name__ == "__main__":
    run_main(main)
