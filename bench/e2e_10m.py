"""The 10M-item end-to-end run on one machine (``make e2e-10m``): generate a synthetic AL-GR-shaped
catalog (10M x 512-d float32, ~20 GB of Parquet, plus co-occurrence pairs) -> train the tokenizer for
some steps -> assign SIDs -> simulate the next day -> re-tokenize. Writes ``<run-dir>/report.md`` and
``<run-dir>/metrics.json`` with the timings, cost per item, memory and SID metrics of every stage.

    python bench/e2e_10m.py [--items 10000000] [--run-dir runs/e2e-10m] [--steps 50] [--reuse-data]

The tokenizer trains on the pair view of a 5 % sample of the items (``--pair-view-fraction``): 50 steps
of 8192 rows consume 0.4M of its ~1M rows, and the whole view would be ~90 GB at 10M items. The
defaults (3 x 256 codes, 50 steps) are the 1M-item ``--only e2e`` bench's, so the cost per item of the
two sizes compares; ``--codebook-size 8192`` is the AL-GR preset's (~20 s per step on 2 cores).
Such a short run leaves coarse SIDs (at 10M items one code tuple held 95,739 items), so the suffix
space is 2^20 (``--max-suffix``); the report gives the largest group.
Needs ~50 GB of free disk at the peak (day-1 catalog 20 GB, the join's scratch copy of it, the
day-2 catalog) and takes ~32 minutes on 2 cores (2026-11-27: docs/e2e-10m/report.md).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_e2e import E2EConfig, run_e2e, write_report  # noqa: E402
from bench.common import REPO, machine_info, start_ray  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--run-dir", default=str(REPO / "runs" / "e2e-10m"))
    parser.add_argument("--steps", type=int, default=50, help="tokenizer optimizer steps")
    parser.add_argument("--batch-size", type=int, default=8192, help="tokenizer global batch")
    parser.add_argument("--codebook-size", type=int, default=256, help="codes per level (AL-GR preset: 8192)")
    parser.add_argument("--num-partitions", type=int, default=64, help="SID exchange partitions")
    parser.add_argument("--join-partitions", type=int, default=64, help="partitions of the pair-view join")
    parser.add_argument("--pair-view-fraction", type=float, default=0.05,
                        help="share of the items the pair view is built for (and the tokenizer trains on)")
    parser.add_argument("--max-suffix", type=int, default=1_048_575,
                        help="suffix space of the collision resolution (50 steps leave coarse SIDs: at 10M items "
                             "one code tuple held 95,739 items)")
    parser.add_argument("--reuse-data", action="store_true", help="keep an already generated catalog")
    args = parser.parse_args()
    from simcit_dist.logs import setup_logging

    setup_logging()
    machine = machine_info(smoke=False)  # the load average before the run starts
    start_ray()
    cfg = E2EConfig(num_items=args.items, run_dir=Path(args.run_dir), steps=args.steps, batch_size=args.batch_size,
                    codebook_size=args.codebook_size, num_partitions=args.num_partitions,
                    join_partitions=args.join_partitions, pair_view_fraction=args.pair_view_fraction,
                    max_suffix=args.max_suffix,
                    reuse_data=args.reuse_data)
    report = run_e2e(cfg)
    report["machine"] = machine
    command = "python bench/e2e_10m.py " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "make e2e-10m"
    path = write_report(report, cfg.run_dir, f"End-to-end run: {cfg.num_items:,} items on one machine", command)
    logging.getLogger("bench").info("report: %s", path)


if __name__ == "__main__":
    main()
