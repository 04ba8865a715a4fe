"""Score SID tables without training a recommender: co-occurrence and cross-entropy proxies of each
table (a published SID root or a LETTER-style index .json) over the same interactions.

    python jobs/score_sids.py --config conf/score_sids.yaml [window=5 tables.mine=runs/demo/sids]

Writes <output>/metrics.json and <output>/report.md (with the Spearman correlation of each proxy
with the ``reference`` recommender metric, when given for at least 3 tables). No Ray needed.
"""

from __future__ import annotations

import logging

from _common import parse, run_main

from simcit_dist.report.markdown import table
from simcit_dist.workflows.score_sids import SUMMARY, ScoreSidsConfig, score_sids

CONFIG_CLASS = ScoreSidsConfig


def main() -> None:
    cfg, _ = parse(__doc__ or "", ScoreSidsConfig, "conf/score_sids.yaml")
    result = score_sids(cfg)
    rows = [{"table": name, **{k: scores[k] for k in SUMMARY}} for name, scores in result["tables"].items()]
    logging.getLogger("score_sids").info("wrote %s/report.md\n%s", cfg.output, table(rows))


if __name__ == "__main__":
    run_main(main)
