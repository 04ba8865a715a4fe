"""Run the benchmark suite (``make bench``; ``make bench-smoke`` for tiny sizes).

    python bench/run_all.py [--smoke] [--only tokenizer,assign] [--results DIR]

Each benchmark module runs in its own process with its own local Ray and writes
``<results>/<name>.json`` (figures with value, unit, target and pass/fail, plus the machine: CPU
count, torch threads, Ray version, date, load average, smoke flag). Then ``<results>/summary.md``
gets one table per benchmark. A full run writes to ``bench/results`` (``docs/benchmarks.md`` links
its ``summary.md``), a smoke run to ``runs/bench-smoke/results``; the README and docs/ are never written.

Exits non-zero when a benchmark crashed; a missed target is a result, reported in the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/run_all.py` from a checkout
    sys.path.insert(0, str(REPO))

from simcit_dist.worker_env import WORKER_ENV_VARS  # noqa: E402

MODULES = ["tokenizer", "assign", "pair_views", "kmeans", "recommender", "recommender_job", "decode", "memory", "e2e"]
RESULTS = REPO / "bench" / "results"
SMOKE_RESULTS = REPO / "runs" / "bench-smoke" / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, same figures (CI)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(MODULES)}")
    parser.add_argument("--results", default=None, help=f"result directory (default {RESULTS.relative_to(REPO)}, "
                                                        f"smoke: {SMOKE_RESULTS.relative_to(REPO)})")
    parser.add_argument("--work", default=None, help="scratch directory (default: runs/bench[-smoke]/work)")
    parser.add_argument("--data", default=None, help="synthetic data cache (default: runs/bench[-smoke]/data)")
    return parser.parse_args()


def run_module(name: str, results: Path, work: Path, data: Path, smoke: bool) -> tuple[int, float]:
    cmd = [sys.executable, "-m", f"bench.bench_{name}", "--out", str(results / f"{name}.json"), "--work", str(work),
           "--data", str(data)] + (["--smoke"] if smoke else [])
    # The process itself runs training loops (in-memory, single-process, reference) as well as Ray.
    env = dict(os.environ, **WORKER_ENV_VARS, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    start = time.time()
    print(f"== bench {name}{' (smoke)' if smoke else ''}", flush=True)
    rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
    seconds = time.time() - start
    print(f"== bench {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s", flush=True)
    return rc, seconds


# ---- markdown ------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def _verdict(passed: bool | None, target: str) -> str:
    if not target:
        return ""
    return {True: "pass", False: "**FAIL**", None: "not measured"}[passed]


def module_table(result: dict[str, Any], results_link: str) -> str:
    m = result["machine"]
    cpu = f"{m['cpu_model']}, " if m.get("cpu_model") else ""
    head = (f"### {result['title']}\n\n`{results_link}/{result['name']}.json` — {m['date']}, {cpu}{m['cpu_count']} CPUs "
            f"({m.get('physical_cores')} cores), Ray {m['ray_version']} with {m.get('ray_num_cpus')} logical CPUs, "
            f"load average {_fmt(m.get('load_avg_1m'))} -> {_fmt(m.get('load_avg_1m_end'))}, "
            f"{result['seconds']:.0f} s{' — **smoke run: tiny sizes, not representative**' if m.get('smoke') else ''}"
            "\n\n")
    if result.get("error"):
        head += f"**The benchmark crashed:** `{result['error']}`\n\n"
    lines = ["| figure | value | unit | target | result | note |", "|---|---:|---|---|---|---|"]
    for f in result["figures"]:
        lines.append(f"| {f['name']} | {_fmt(f['value'])} | {f['unit']} | {f['target']} | "
                     f"{_verdict(f['passed'], f['target'])} | {f['note']} |")
    return head + "\n".join(lines) + "\n"


def summary_markdown(results: list[dict[str, Any]], results_link: str,
                     scaling_link: str = "../../docs/scaling.md") -> str:
    """The summary page; ``scaling_link`` is docs/scaling.md relative to where the page is written."""
    targets = [f for r in results for f in r["figures"] if f["target"]]
    passed = sum(1 for f in targets if f["passed"] is True)
    failed = [f"{r['name']}.{f['name']}" for r in results for f in r["figures"] if f["target"] and f["passed"] is False]
    intro = (f"Generated by `bench/run_all.py` (`make bench`). Every figure is a rate, a ratio or a cost per item "
             f"measured side by side in one run; targets come from the issues. {passed} of {len(targets)} targets "
             f"pass" + (f"; missed: {', '.join(failed)}" if failed else "") + ". How these numbers extrapolate to "
             f"AL-GR (250M items): [docs/scaling.md]({scaling_link}).")
    missing = [m for m in MODULES if m not in {r["name"] for r in results}]
    if missing:  # a partial run (--only) must not read as the whole suite
        intro += (f" Not in these results (not run at this size yet): {', '.join(missing)}; "
                  f"`python bench/run_all.py --only {','.join(missing)}` adds them.")
    return intro + "\n\n" + "\n".join(module_table(r, results_link) for r in results)


def main() -> None:
    args = parse_args()
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(only) - set(MODULES))
    if unknown:
        sys.exit(f"--only: unknown benchmark(s) {unknown}; choose from {MODULES}")
    modules = [m for m in MODULES if not only or m in only]
    base = REPO / "runs" / ("bench-smoke" if args.smoke else "bench")
    results = Path(args.results) if args.results else (SMOKE_RESULTS if args.smoke else RESULTS)
    work = Path(args.work) if args.work else base / "work"
    data = Path(args.data) if args.data else base / "data"
    results.mkdir(parents=True, exist_ok=True)
    failures = []
    for name in modules:
        rc, _ = run_module(name, results, work, data, args.smoke)
        if rc != 0:
            failures.append(name)
    found = [json.loads((results / f"{m}.json").read_text()) for m in MODULES if (results / f"{m}.json").exists()]
    link = os.path.relpath(results, REPO) if results.is_relative_to(REPO) else str(results)
    summary = summary_markdown(found, link, os.path.relpath(REPO / "docs" / "scaling.md", results))
    (results / "summary.md").write_text("# Benchmark results\n\n" + summary)
    print(f"summary: {results / 'summary.md'}")
    if failures:
        sys.exit(f"benchmarks that crashed: {failures}")


if __name__ == "__main__":
    main()
