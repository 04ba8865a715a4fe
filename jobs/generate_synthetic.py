"""Generate a synthetic catalog + co-occurrence pairs + interactions (parallel Ray tasks).

    python jobs/generate_synthetic.py --config conf/synthetic.yaml data.num_items=1000000 output=s3://b/synth
"""

from __future__ import annotations

from _common import init_ray, parse, run_main

from simcit_dist.inputs.config import GenerateJobConfig
from simcit_dist.inputs.generate import generate_synthetic

CONFIG_CLASS = GenerateJobConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", GenerateJobConfig, "conf/synthetic.yaml")
    init_ray(args.num_cpus)
    generate_synthetic(cfg.data, cfg.output, cfg.storage, num_tasks=cfg.num_tasks,
                       with_pairs=cfg.with_pairs, with_interactions=cfg.with_interactions)


if __name__ == "__main__":
    run_main(main)
