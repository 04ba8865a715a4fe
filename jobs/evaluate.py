"""Evaluate a trained recommender (exported model dir or training checkpoint) on validation/test:
constrained beam search over the SID table, item-level Recall/NDCG@K, on a pool of Ray actors.

    python jobs/evaluate.py --config conf/evaluate.yaml [model=runs/demo/recommender/model eval.beam_size=100]

Writes <output>/metrics.json; the split protocol and SID version default to the ones the model
was trained with.
"""

from __future__ import annotations

import json
import logging

from _common import init_ray, parse, run_main

from simcit_dist.recommender.config import EvaluateJobConfig
from simcit_dist.recommender.pipeline import evaluate_trained

CONFIG_CLASS = EvaluateJobConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", EvaluateJobConfig, "conf/evaluate.yaml")
    init_ray(args.num_cpus)
    report = evaluate_trained(cfg.model, cfg.interactions, cfg.sid_root, cfg.output, cfg.eval, cfg.storage,
                              cfg.splits, cfg.data, cfg.sid_version, cfg.sequences)
    metrics = {split: report[split] for split in cfg.splits}
    logging.getLogger("evaluate").info("%s", json.dumps(metrics, indent=1))


if __name__ == "__main__":
    run_main(main)
