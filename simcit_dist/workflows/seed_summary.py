"""Several seeds of one comparison in one table: mean ± standard deviation per tokenizer, and each
seed's Recall@10 beside it, so a difference between tokenizers can be read against the spread of
one tokenizer over seeds (a single run's 0.01 swing is noise on small data)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from simcit_dist.report import markdown

STD = " std"  # suffix of a column's standard-deviation key in the aggregated rows


def aggregate_seeds(rows_by_seed: Mapping[int, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per tokenizer (in the first seed's order): each numeric column's mean over the seeds
    under its own name and its sample standard deviation (ddof 1; NaN from a single value) under
    ``<column> std``; ``seeds`` counts the runs it has. A column missing or NaN in a run is
    averaged over the runs that have it."""
    seeds = list(rows_by_seed)
    if not seeds:
        return []
    by_name = {seed: {str(r["tokenizer"]): r for r in rows} for seed, rows in rows_by_seed.items()}
    out = []
    for first in rows_by_seed[seeds[0]]:
        name = str(first["tokenizer"])
        runs = [by_name[s][name] for s in seeds if name in by_name[s]]
        row: dict[str, Any] = {"tokenizer": name, "kind": first.get("kind", ""), "seeds": len(runs)}
        for column, value in first.items():
            if column in row:
                continue
            if not _is_number(value):  # text (the row's command): kept where every run agrees
                if all(r.get(column) == value for r in runs):
                    row[column] = value
                continue
            values = [float(r[column]) for r in runs if _is_number(r.get(column)) and not math.isnan(float(r[column]))]
            row[column] = float(np.mean(values)) if values else float("nan")
            row[column + STD] = _sample_std(values)
        out.append(row)
    return out


def _sample_std(values: list[float]) -> float:
    """ddof-1 standard deviation, NaN for a single value. A spread below 1e-9 of the mean is rounding
    (the same metric summed in another order differs in the last bit) and is reported as 0."""
    if len(values) < 2:
        return float("nan")
    std = float(np.std(values, ddof=1))
    return 0.0 if std <= 1e-9 * abs(float(np.mean(values))) else std


def seed_table(aggregated: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Markdown table of ``mean ± std`` cells for ``columns`` (plus the tokenizer, kind and seeds)."""
    cells = [{"tokenizer": r["tokenizer"], "kind": r["kind"], "seeds": r["seeds"],
              **{c: _mean_std(r.get(c), r.get(c + STD)) for c in columns}} for r in aggregated]
    return markdown.table(cells, ["tokenizer", "kind", "seeds", *columns])


def per_seed_table(rows_by_seed: Mapping[int, Sequence[Mapping[str, Any]]], column: str) -> str:
    """Markdown table of one column per tokenizer (rows) and seed (columns)."""
    names = [str(r["tokenizer"]) for r in next(iter(rows_by_seed.values()), [])]
    cells = []
    for name in names:
        cell: dict[str, Any] = {"tokenizer": name}
        for seed, rows in rows_by_seed.items():
            cell[f"seed {seed}"] = next((r.get(column) for r in rows if r["tokenizer"] == name), float("nan"))
        cells.append(cell)
    return markdown.table(cells, ["tokenizer", *[f"seed {s}" for s in rows_by_seed]])


def _mean_std(mean: Any, std: Any) -> str:
    if not _is_number(mean) or math.isnan(float(mean)):
        return "–"
    if not _is_number(std) or math.isnan(float(std)):  # one run: no spread to show
        return markdown.fmt(float(mean))
    return f"{markdown.fmt(float(mean))} ± {markdown.fmt(float(std))}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
