"""The benchmark harness in smoke mode: every module runs, and writes strict JSON with all its figures."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import run_all

REPO = Path(__file__).resolve().parents[2]
MACHINE_KEYS = {"cpu_count", "torch_threads", "ray_version", "date", "smoke", "load_avg_1m"}
FIGURE_KEYS = {"name", "value", "unit", "target", "passed", "note"}


def _strict(text: str) -> dict:
    def reject(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


@pytest.mark.slow
@pytest.mark.bench_smoke
@pytest.mark.timeout(1800)  # ~11 min on 2 idle cores: over the suite's 900 s per-test limit when the machine is busy
def test_smoke_suite_writes_every_figure(tmp_path: Path) -> None:
    pages = [REPO / "README.md", REPO / "docs" / "benchmarks.md"]
    pages_before = [page.read_text() for page in pages]
    results = tmp_path / "results"
    start = time.time()
    proc = subprocess.run([sys.executable, "bench/run_all.py", "--smoke", "--results", str(results),
                           "--work", str(tmp_path / "work"), "--data", str(tmp_path / "data")],
                          cwd=REPO, capture_output=True, text=True, timeout=1700)
    seconds = time.time() - start
    if proc.returncode != 0:
        errors = {f.stem: json.loads(f.read_text()).get("error") for f in results.glob("*.json")}
        pytest.fail(f"run_all failed: {errors}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    for name in run_all.MODULES:
        module = importlib.import_module(f"bench.bench_{name}")
        result = _strict((results / f"{name}.json").read_text())
        assert result["name"] == name and result["error"] is None
        assert MACHINE_KEYS <= set(result["machine"]) and result["machine"]["smoke"] is True
        assert result["machine"]["cpu_count"] >= 1
        figures = result["figures"]
        assert [f["name"] for f in figures] == module.FIGURES
        # A figure that needs an outside input (e.g. a checkout of the SimCIT reference) may be
        # unmeasured only when that input is absent from this environment.
        absent = {fig for fig, env in getattr(module, "NEEDS_ENV", {}).items() if not os.environ.get(env)}
        for f in figures:
            assert set(f) == FIGURE_KEYS
            if f["name"] in absent:
                assert f["value"] is None or not math.isfinite(f["value"])
                assert "not measured" in f["note"] or "to measure" in f["note"], f
                continue
            assert f["value"] is not None and math.isfinite(f["value"]), f"{name}.{f['name']} was not measured"
            assert (f["passed"] is None) == (not f["target"]), f
    summary = (results / "summary.md").read_text()
    assert all(f"`{results}/{m}.json`" in summary for m in run_all.MODULES)
    assert [page.read_text() for page in pages] == pages_before  # run_all never writes the README or docs/
    print(f"smoke suite: {seconds:.0f} s")


def test_summary_links_scaling_from_where_it_is_written() -> None:
    link = os.path.relpath(REPO / "docs" / "scaling.md", run_all.RESULTS)
    assert f"[docs/scaling.md]({link})" in run_all.summary_markdown([], "bench/results", link)
    assert (run_all.RESULTS / link).resolve() == (REPO / "docs" / "scaling.md").resolve()
    assert "(../../docs/scaling.md)" in run_all.summary_markdown([], "bench/results")  # the default: bench/results
    assert "docs/benchmarks.md" in (REPO / "README.md").read_text()  # the README links the benchmarks page
    assert "bench/results/summary.md" in (REPO / "docs" / "benchmarks.md").read_text()  # which links the tables


def test_missing_figures_are_recorded_as_not_measured() -> None:
    from bench.common import BenchResult, dumps, to_json

    result = BenchResult()
    result.add("a", 2.0, "x", (">=", 1.0))
    out = _strict(dumps(to_json("demo", "Demo", result, {"cpu_count": 2}, 1.0, "RuntimeError: boom", ["a", "b"])))
    assert [f["name"] for f in out["figures"]] == ["a", "b"]
    assert out["figures"][0]["passed"] is True and out["figures"][0]["target"] == ">= 1"
    assert out["figures"][1]["value"] is None and "boom" in out["figures"][1]["note"]
    with pytest.raises(ValueError, match="not in its FIGURES"):
        to_json("demo", "Demo", result, {}, 1.0, None, ["b"])


def test_summary_names_the_benchmarks_a_partial_run_left_out() -> None:
    result = {"name": "assign", "title": "Assign", "seconds": 1.0, "error": None, "figures": [],
              "machine": {"date": "d", "cpu_count": 2, "ray_version": "x"}}
    others = [m for m in run_all.MODULES if m != "assign"]
    summary = run_all.summary_markdown([result], "bench/results")
    assert f"Not in these results (not run at this size yet): {', '.join(others)}" in summary
    assert "Not in these results" not in run_all.summary_markdown(
        [{**result, "name": m} for m in run_all.MODULES], "bench/results")


def test_e2e_rerun_starts_from_a_clean_run_directory(tmp_path: Path) -> None:
    from bench.bench_e2e import clear_previous_run

    for keep in (True, False):
        run = tmp_path / f"run-{keep}"
        (run / "ray" / "tokenizer" / "checkpoint_000001").mkdir(parents=True)  # would be resumed
        (run / "data" / "catalog").mkdir(parents=True)
        (run / "report.json").write_text("{}")
        clear_previous_run(run, keep_data=keep)
        assert sorted(p.name for p in run.iterdir()) == (["data"] if keep else [])
    clear_previous_run(tmp_path / "never-run", keep_data=False)  # nothing to clear


def test_e2e_reuses_only_a_catalog_of_the_same_config(tmp_path: Path) -> None:
    from bench.bench_e2e import generated_with
    from bench.common import algr_like
    from simcit_dist.config_loader import to_dict

    data = tmp_path / "data"
    data.mkdir()
    assert not generated_with(data, algr_like(1000, pairs_per_item=1.0))  # nothing generated yet
    (data / "dataset.json").write_text(json.dumps({"config": to_dict(algr_like(1000, pairs_per_item=1.0))}))
    assert generated_with(data, algr_like(1000, pairs_per_item=1.0))
    assert not generated_with(data, algr_like(2000, pairs_per_item=1.0))  # another size
