"""Train a SimCIT (or RQ-VAE / RQ-KMeans) tokenizer with Ray Train DDP over a streamed catalog.

    python jobs/train_tokenizer.py --config conf/tokenizer.yaml train.num_workers=4 run.name=nightly-01
    ray job submit --working-dir . -- python jobs/train_tokenizer.py --config conf/tokenizer_algr.yaml

Re-running with the same run.name (and run.storage_path) resumes from the latest checkpoint.
"""

from __future__ import annotations

from _common import init_ray, parse, run_main

from simcit_dist.tokenizer_training.config import TokenizerJobConfig
from simcit_dist.tokenizer_training.job import run_tokenizer_training
from simcit_dist.tokenizer_training.report import write_tokenizer_report

CONFIG_CLASS = TokenizerJobConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", TokenizerJobConfig, "conf/tokenizer.yaml")
    init_ray(args.num_cpus)
    result = run_tokenizer_training(cfg)
    write_tokenizer_report(result, cfg.run.run_dir, f"Tokenizer training: {cfg.tokenizer.kind} ({cfg.run.name})")


if __name__ == "__main__":
    run_main(main)
