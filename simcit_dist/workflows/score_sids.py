"""Score SID tables without training a recommender: the proxies of :mod:`simcit_dist.sids.proxies`
for several tables over the same interactions, in one ``metrics.json`` and one markdown table.

Each table is a published SID root (``<root>/LATEST`` -> ``versions/<v>/``) or a LETTER-style JSON
index (``*.json``), which is first published under ``<output>/sids/<name>`` exactly as the
comparison workflow imports it (same suffixes), so the scores describe what a recommender would
be trained on. With ``reference`` values (a recommender metric per table, e.g. test Recall@10 of
one comparison run) the report adds the Spearman correlation of every proxy with them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simcit_dist.assign.external import import_letter_index
from simcit_dist.data.parquet_io import read_schema, read_table
from simcit_dist.data.schemas import INTERACTIONS_SCHEMA, check_columns
from simcit_dist.report import markdown
from simcit_dist.sids.proxies import MIN_INTERACTIONS, build_sequences, catalog_rows, sid_proxies
from simcit_dist.sids.table import code_columns, read_sid_table
from simcit_dist.storage import StorageConfig, resolve, write_json, write_text

log = logging.getLogger(__name__)

# The markdown table's columns (metrics.json has every proxy of every level).
SUMMARY = ["collision_rate", "distinct_fraction", "perplexity_l1", "cond_perplexity_l2", "next_match_l1",
           "next_match_lift_l1", "history_match_l1", "purity_l1", "xent_l1", "xent_mean", "item_xent"]


@dataclass
class ScoreSidsConfig:
    """Which SID tables to score against which interactions, and where the report goes."""

    tables: dict[str, str] = field(default_factory=dict)  # name -> SID root, or a LETTER-style index *.json
    interactions: str = ""  # Parquet: user_id, item_id, timestamp (int64)
    output: str = ""  # metrics.json, report.md, and sids/<name> for imported indexes
    window: int = 10  # "any of the last N history items" (the recommender's data.max_history)
    min_interactions: int = MIN_INTERACTIONS  # as the recommender's data.min_interactions
    max_suffix: int = 1023  # for imported indexes, as assign.max_suffix
    reference: dict[str, float] = field(default_factory=dict)  # name -> a recommender metric to correlate with
    reference_metric: str = "Recall@10"  # what the reference values are (report label only)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        if not self.tables:
            raise ValueError("tables must name at least one SID table: {name: SID root or LETTER index .json}")
        if not self.interactions or not self.output:
            raise ValueError("interactions and output are required")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.min_interactions < MIN_INTERACTIONS:
            raise ValueError(f"min_interactions must be >= {MIN_INTERACTIONS}, got {self.min_interactions}")
        unknown = sorted(set(self.reference) - set(self.tables))
        if unknown:
            raise ValueError(f"reference names {unknown} are not tables; tables are {sorted(self.tables)}")


def load_codes(cfg: ScoreSidsConfig, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(item ids (N,) ascending, codes (N, L), suffix (N,), version) of table ``name``."""
    uri = cfg.tables[name]
    root = uri
    if uri.endswith(".json"):
        root = f"{cfg.output}/sids/{name}"
        import_letter_index(uri, root, cfg.storage, cfg.max_suffix)
    table, manifest = read_sid_table(root, cfg.storage)
    table = table.sort_by("item_id")
    codes = np.column_stack([table.column(c).to_numpy() for c in code_columns(manifest.num_levels)])
    return (table.column("item_id").to_numpy().astype(np.int64), codes.astype(np.int64),
            table.column("suffix").to_numpy().astype(np.int64), manifest.version)


def read_interactions(cfg: ScoreSidsConfig) -> dict[str, np.ndarray]:
    loc = resolve(cfg.interactions, cfg.storage)
    check_columns(read_schema(loc), INTERACTIONS_SCHEMA, loc.uri)
    table = read_table(loc, columns=INTERACTIONS_SCHEMA.names)
    return {c: table.column(c).to_numpy().astype(np.int64) for c in INTERACTIONS_SCHEMA.names}


def score_table(cfg: ScoreSidsConfig, name: str, inter: dict[str, np.ndarray]) -> dict[str, Any]:
    """The proxies of one table, with its version and how many interactions had no SID."""
    start = time.perf_counter()
    item_ids, codes, suffix, version = load_codes(cfg, name)
    rows = catalog_rows(item_ids, inter["item_id"])
    seq = build_sequences(inter["user_id"], rows, inter["timestamp"], cfg.min_interactions)
    scores: dict[str, Any] = {"version": version, "items": len(item_ids), "levels": codes.shape[1],
                              "interactions_without_sid": int((rows < 0).sum()), "users": seq.num_users}
    scores.update(sid_proxies(codes, suffix, seq, cfg.window))
    log.info("%s: scored %d items, %d users in %.1fs", name, len(item_ids), seq.num_users,
             time.perf_counter() - start)
    return scores


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson correlation of the ranks (ties get their average rank)."""
    rx, ry = _ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def correlations(scores: dict[str, dict[str, Any]], reference: dict[str, float]) -> list[dict[str, Any]]:
    """Per proxy (a float in every referenced table, not constant across them): Spearman rho with
    the reference and n, strongest first."""
    names = [n for n in scores if n in reference]
    if len(names) < 3:
        return []
    keys = [k for k, v in scores[names[0]].items()
            if isinstance(v, float) and all(isinstance(scores[n].get(k), float) for n in names)]
    y = np.array([reference[n] for n in names])
    rows = [{"proxy": k, "rho": spearman(np.array([scores[n][k] for n in names]), y), "n": len(names)}
            for k in keys]
    return sorted((r for r in rows if r["rho"] == r["rho"]), key=lambda r: -abs(r["rho"]))


def render(scores: dict[str, dict[str, Any]], corr: list[dict[str, Any]], cfg: ScoreSidsConfig) -> str:
    rows = [{"table": n, **({cfg.reference_metric: cfg.reference[n]} if n in cfg.reference else {}),
             **{k: s.get(k, float("nan")) for k in SUMMARY}} for n, s in scores.items()]
    ref = [cfg.reference_metric] if cfg.reference else []
    text = (f"## SID proxy scores ({cfg.interactions})\n\nValidation targets, history window {cfg.window}; "
            "cross-entropies in nats (lower is better).\n\n" + markdown.table(rows, ["table", *ref, *SUMMARY]))
    if corr:
        text += f"\n### Spearman rho with {cfg.reference_metric} (n = {corr[0]['n']})\n\n" + markdown.table(corr)
    return text


def score_sids(cfg: ScoreSidsConfig) -> dict[str, Any]:
    """Score every table; writes ``<output>/metrics.json`` and ``<output>/report.md``."""
    inter = read_interactions(cfg)
    scores = {name: score_table(cfg, name, inter) for name in cfg.tables}
    corr = correlations(scores, cfg.reference)
    out = resolve(cfg.output, cfg.storage)
    result = {"tables": scores, "reference": cfg.reference, "reference_metric": cfg.reference_metric,
              "spearman": corr, "window": cfg.window, "interactions": cfg.interactions}
    write_json(out.child("metrics.json"), result)
    write_text(out.child("report.md"), render(scores, corr, cfg))
    return result
