"""Train the generative recommender on one published SID table (Ray Train + DeepSpeed), validate each
epoch, test at the end; writes metrics.json, report.md (+ curves) and the exported model to `output`.

    python jobs/train_recommender.py --config conf/recommender.yaml [sid_root=s3://b/sids training.epochs=20]
    ray job submit --working-dir . -- python jobs/train_recommender.py --config conf/recommender_algr.yaml

Re-running with the same run.name (and run.storage_path) resumes from the latest checkpoint.
"""

from __future__ import annotations

import logging

from _common import init_ray, log_split_metrics, parse, run_main

from simcit_dist.recommender.config import TrainRecommenderJobConfig
from simcit_dist.recommender.pipeline import train_and_evaluate

CONFIG_CLASS = TrainRecommenderJobConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", TrainRecommenderJobConfig, "conf/recommender.yaml")
    init_ray(args.num_cpus)
    report = train_and_evaluate(cfg.interactions, cfg.sid_root, cfg.recommender(), cfg.output, cfg.run,
                                cfg.storage, cfg.sid_version)
    log_split_metrics("train_recommender", report, cfg.eval.epoch_metric_k)
    log = logging.getLogger("train_recommender")
    log.info("run directory: %s", cfg.output)


if __name__ == "__main__":
    run_main(main)
