"""Validate a catalog (+ co-occurrence pairs, interactions) and write the training inputs.

    python jobs/prepare_data.py --config conf/prepare.yaml catalog=s3://b/algr/catalog output=s3://b/prepared

Writes <output>/{catalog,pairs,interactions}/part-*.parquet, <output>/rejects/ (every rejected row
with source file, row and reason) and <output>/summary.json, published only when each table's
reject fraction is <= max_reject_fraction; <run_dir>/prepare_summary.json either way.
"""

from __future__ import annotations

from _common import init_ray, parse, run_main

from simcit_dist.inputs.config import PrepareJobConfig
from simcit_dist.inputs.prepare import prepare_data

CONFIG_CLASS = PrepareJobConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", PrepareJobConfig, "conf/prepare.yaml")
    init_ray(args.num_cpus)
    prepare_data(cfg)


if __name__ == "__main__":
    run_main(main)
