"""Validate a catalog (+ co-occurrence pairs, interactions) and write the training inputs.

    python jobs/prepare_data.py --config conf/prepare.yaml catalog=s3://b/algr/catalog output=s3://b/prepared

Writes <output>/{catalog,pairs,interactions}/part-*.parquet, <output>/rejects/ (every rejected row
with source file, row and reason) and <output>/summary.json, published only when each table's
reject fraction is <= max_reject_fraction; <run_dir>/prepare_summary.json either way.
"""

from __future__ import annotations

import sys

from _common import init_ray, parse

from simcit_dist.data.rejects import RejectThresholdError
from simcit_dist.data.schemas import SchemaError
from simcit_dist.inputs.config import PrepareJobConfig
from simcit_dist.inputs.prepare import prepare_data

CONFIG_CLASS = PrepareJobConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", PrepareJobConfig, "conf/prepare.yaml")
    init_ray(args.num_cpus)
    try:
        prepare_data(cfg)
    except (RejectThresholdError, SchemaError, FileNotFoundError) as e:
        sys.exit(f"prepare_data failed: {e}")


if __name__ == "__main__":
    main()
