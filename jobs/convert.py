"""Convert a raw source (AL-GR, Amazon, Foursquare) into canonical Parquet tables + rejects.

    python jobs/convert.py --config conf/convert_algr.yaml algr.input=s3://b/item_emb.csv output=s3://b/algr
    python jobs/convert.py --config conf/convert_scientific.yaml

Writes <output>/{catalog,pairs,interactions,...}/part-*.parquet, <output>/rejects/ and
<output>/summary.json (published only on success), and <run_dir>/convert_summary.json.
"""

from __future__ import annotations

from _common import init_ray, parse, run_main

from simcit_dist.inputs.config import ConvertJobConfig
from simcit_dist.inputs.converters import convert

CONFIG_CLASS = ConvertJobConfig


def main() -> None:
    cfg, args = parse(__doc__ or "", ConvertJobConfig, "conf/convert_algr.yaml")
    init_ray(args.num_cpus)
    convert(cfg)


if __name__ == "__main__":
    run_main(main)
