"""Compare tokenizers in the recommender: SimCIT, RQ-VAE, RQ-KMeans (and external SID tables, e.g.
LETTER-style JSON index files) on the same data, recommender settings and seeds; one table + plot.

    python jobs/compare_tokenizers.py --config conf/compare_synthetic.yaml
    python jobs/compare_tokenizers.py --config conf/compare_beauty.yaml external.letter=path/to/Beauty.index.json
    python jobs/compare_tokenizers.py --config conf/compare_scientific.yaml "seeds=[0,1,2]"   # mean ± std
"""

from __future__ import annotations

import shlex
import sys

from _common import init_ray, parse, run_main

from simcit_dist.workflows.compare import run_comparison
from simcit_dist.workflows.config import CompareJobConfig

CONFIG_CLASS = CompareJobConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", CompareJobConfig, "conf/compare_synthetic.yaml")
    init_ray(args.num_cpus)
    print(run_comparison(cfg, command=shlex.join(["python", *sys.argv])))


if __name__ == "__main__":
    run_main(main)
