"""Assign SIDs to a whole catalog, or re-tokenize it nightly against the previous published version.

    python jobs/assign_sids.py --config conf/assign.yaml tokenizer=s3://b/tok catalog=s3://b/catalog
    python jobs/assign_sids.py --config conf/retokenize_nightly.yaml previous=LATEST

Writes <output>/versions/<version>/ and then moves <output>/LATEST; a failed run publishes nothing.
"""

from __future__ import annotations

import logging

from _common import init_ray, parse, run_main

from simcit_dist.assign.config import AssignJobConfig
from simcit_dist.assign.job import run_assignment
from simcit_dist.assign.report import write_assign_report

CONFIG_CLASS = AssignJobConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", AssignJobConfig, "conf/assign.yaml")
    init_ray(args.num_cpus)
    result = run_assignment(cfg)
    print(write_assign_report(result.manifest, cfg.run_dir))
    logging.getLogger("assign_sids").info("SID table: %s", result.version_uri)


if __name__ == "__main__":
    run_main(main)
