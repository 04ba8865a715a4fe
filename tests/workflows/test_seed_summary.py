"""Several seeds of a comparison in one table: means and sample standard deviations checked by
hand, missing/NaN figures averaged over the runs that have them, and the per-seed column."""

from __future__ import annotations

import math

import pytest

from simcit_dist.workflows.seed_summary import aggregate_seeds, per_seed_table, seed_table

ROWS_BY_SEED = {
    0: [{"tokenizer": "simcit", "kind": "simcit", "Recall@10": 0.1, "collision": 0.2, "max suffix": 3},
        {"tokenizer": "most popular", "kind": "baseline", "Recall@10": 0.05}],
    4: [{"tokenizer": "simcit", "kind": "simcit", "Recall@10": 0.3, "collision": float("nan"), "max suffix": 5},
        {"tokenizer": "most popular", "kind": "baseline", "Recall@10": 0.05}],
}


def test_aggregate_seeds_mean_and_sample_std() -> None:
    simcit, popular = aggregate_seeds(ROWS_BY_SEED)
    assert (simcit["tokenizer"], simcit["kind"], simcit["seeds"]) == ("simcit", "simcit", 2)
    assert simcit["Recall@10"] == pytest.approx(0.2)
    assert simcit["Recall@10 std"] == pytest.approx(math.sqrt(0.1 ** 2 + 0.1 ** 2))  # ddof 1: /(2 - 1)
    assert simcit["max suffix"] == pytest.approx(4.0) and simcit["max suffix std"] == pytest.approx(math.sqrt(2))
    # NaN in seed 4: the mean of the one run that has it, and no spread to report.
    assert simcit["collision"] == pytest.approx(0.2) and math.isnan(simcit["collision std"])
    assert popular["Recall@10"] == pytest.approx(0.05) and popular["Recall@10 std"] == 0.0
    # The same figure summed in another order differs in the last bit: a 4e-18 "spread" is shown as 0.
    last_bit = aggregate_seeds({s: [{"tokenizer": "p", "Recall@10": 0.02309 + s * 3.5e-18}] for s in range(3)})[0]
    assert last_bit["Recall@10 std"] == 0.0
    assert aggregate_seeds({}) == []


def test_seed_tables_render_mean_std_and_each_seed() -> None:
    text = seed_table(aggregate_seeds(ROWS_BY_SEED), ["Recall@10", "collision", "Gini"])
    lines = text.splitlines()
    assert lines[0] == "| tokenizer | kind | seeds | Recall@10 | collision | Gini |"
    assert lines[2] == "| simcit | simcit | 2 | 0.2 ± 0.1414 | 0.2 | – |"
    assert lines[3] == "| most popular | baseline | 2 | 0.05 ± 0 | – | – |"
    per_seed = per_seed_table(ROWS_BY_SEED, "Recall@10").splitlines()
    assert per_seed[0] == "| tokenizer | seed 0 | seed 4 |"
    assert per_seed[2:] == ["| simcit | 0.1 | 0.3 |", "| most popular | 0.05 | 0.05 |"]
