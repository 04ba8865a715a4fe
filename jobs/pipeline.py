"""The whole pipeline end to end under one run directory (what `make demo` runs):
generate -> prepare -> train tokenizer (Ray Train, 2 workers) -> assign SIDs -> next-day
re-tokenization -> train + evaluate the recommender (DeepSpeed). Writes <run_dir>/report.md.

    python jobs/pipeline.py --config conf/demo.yaml [run_dir=runs/demo2 generate.data.num_items=50000]
"""

from __future__ import annotations

from _common import init_ray, parse, run_main

from simcit_dist.workflows.config import PipelineConfig
from simcit_dist.workflows.pipeline import run_pipeline

CONFIG_CLASS = PipelineConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", PipelineConfig, "conf/demo.yaml")
    init_ray(args.num_cpus)
    run_pipeline(cfg)


if __name__ == "__main__":
    run_main(main)
