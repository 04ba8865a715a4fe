"""Flat memory: peak RSS of the driver and of every Ray worker while whole catalogs stream through SID
assignment and nightly re-tokenization, at 1M, 4M and 10M synthetic 512-d items (tiny in smoke mode).

The catalogs (and their next-day snapshots) are written by the synthetic generator's Ray tasks in
this process. Each size is then measured in a fresh child process with a fresh local Ray, so
every worker's kernel high-water mark (VmHWM) belongs to that size's run alone: the child runs a
full assignment, then a nightly re-tokenization against it, under :class:`bench.memory.MemoryMonitor`.
The same runs give the job-level cost per item of each stage (encode, stage A, stage B).

Target: peak RSS per worker and of the driver flat within +-15 % across sizes (a streamed job's
memory must not grow with the catalog).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    BenchContext,
    BenchResult,
    algr_like,
    directory_bytes,
    dumps,
    initialised_simcit,
    log,
    module_main,
    ratio,
    start_ray,
    synthetic_dataset,
)
from bench.memory import MemoryMonitor

NAME = "memory"
TITLE = "Peak RSS of the driver and of each Ray worker vs catalog size (streamed assignment + re-tokenization)"
SIZE_NAMES = ("small", "medium", "large")
FIGURES = [
    *(f"driver_peak_rss_mb_{s}" for s in SIZE_NAMES), "driver_rss_spread",
    *(f"worker_peak_rss_mb_{s}" for s in SIZE_NAMES), "worker_rss_spread",
    *(f"worker_peak_rss_no_store_mb_{s}" for s in SIZE_NAMES), "worker_rss_no_store_spread", "worker_anon_spread",
    "worker_peak_store_pages_mb_large", "object_store_gb",
    "assign_job_us_per_item_small", "assign_job_us_per_item_large", "collision_stage_scaling",
    "retokenize_job_us_per_item_small", "retokenize_job_us_per_item_large", "retokenize_job_scaling",
]
KEEP_BELOW = 1_000_000  # catalogs at least this large are deleted after their run (10M = 20 GB)


def run(ctx: BenchContext) -> BenchResult:
    res = BenchResult()
    sizes = ctx.pick((5_000, 10_000, 20_000), (1_000_000, 4_000_000, 10_000_000))
    results = {}
    for n in sizes:
        data, day2 = prepare_size(ctx, n)
        results[n] = measure_in_child(ctx, n, data, day2)
        if n >= KEEP_BELOW:
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(day2.parent, ignore_errors=True)
    res.details["sizes"] = {str(n): r for n, r in results.items()}
    rows = [results[n] for n in sizes]
    for name, key in (("driver", "driver_peak_rss_mb"), ("worker", "worker_peak_rss_mb")):
        for size_name, n, r in zip(SIZE_NAMES, sizes, rows):
            res.add(f"{name}_peak_rss_mb_{size_name}", r["memory"][key], "MiB", note=f"{n:,} items")
        if name == "driver":
            res.add("driver_rss_spread", spread([r["memory"][key] for r in rows]), "fraction", ("<=", 0.15),
                    note="max |peak / peak at the smallest size - 1|")
    # A pooled worker's RSS also counts every object-store page it has ever written or read (shared
    # memory, one copy for the whole node, capped by object_store_memory): that part grows with the
    # length of the run, not with what the worker holds. The flatness target is on RSS without those
    # pages; the raw RSS is reported beside it.
    res.add("worker_rss_spread", spread([r["memory"]["worker_peak_rss_mb"] for r in rows]), "fraction",
            note="largest worker peak RSS per size vs the smallest size, object-store pages included")
    for size_name, n, r in zip(SIZE_NAMES, sizes, rows):
        res.add(f"worker_peak_rss_no_store_mb_{size_name}", r["memory"]["worker_peak_rss_no_store_mb"], "MiB",
                note=f"{n:,} items; RSS minus the object-store pages (RssShmem)")
    res.add("worker_rss_no_store_spread", spread([r["memory"]["worker_peak_rss_no_store_mb"] for r in rows]),
            "fraction", ("<=", 0.15), note="largest worker peak of RSS minus object-store pages, vs the smallest size")
    res.add("worker_anon_spread", spread([r["memory"]["worker_peak_anon_mb"] for r in rows]), "fraction",
            note="same for private memory only (RssAnon: what Ray's memory monitor charges a worker)")
    res.add("worker_peak_store_pages_mb_large", rows[-1]["memory"]["worker_peak_shmem_mb"], "MiB",
            note=f"{sizes[-1]:,} items: most object-store pages one worker had mapped")
    res.add("object_store_gb", rows[-1].get("object_store_gb", float("nan")), "GB",
            note="object_store_memory of the local Ray: the bound on those pages")
    first, last = rows[0], rows[-1]
    res.add("assign_job_us_per_item_small", first["assign"]["us_per_item"], "us/item", note=f"{sizes[0]:,} items")
    res.add("assign_job_us_per_item_large", last["assign"]["us_per_item"], "us/item", note=f"{sizes[-1]:,} items")
    res.add("collision_stage_scaling", ratio(last["assign"]["resolve_us_per_item"],
                                             first["assign"]["resolve_us_per_item"]), "x", ("<=", 1.3),
            note="stage A + B cost per item, largest vs smallest size (1 = linear)")
    res.add("retokenize_job_us_per_item_small", first["nightly"]["us_per_item"], "us/item", note=f"{sizes[0]:,} items")
    res.add("retokenize_job_us_per_item_large", last["nightly"]["us_per_item"], "us/item", note=f"{sizes[-1]:,} items")
    res.add("retokenize_job_scaling", ratio(last["nightly"]["us_per_item"], first["nightly"]["us_per_item"]), "x",
            ("<=", 1.3), note="whole nightly job cost per item, largest vs smallest size")
    return res


def spread(values: list[float]) -> float:
    base = values[0]
    return max(abs(v / base - 1.0) for v in values) if base else float("nan")


def prepare_size(ctx: BenchContext, n: int) -> tuple[Path, Path]:
    """Day-1 catalog (cached) and its next-day snapshot, written by Ray tasks of this process."""
    from simcit_dist.inputs.next_day import NextDayConfig, simulate_next_day

    cfg = algr_like(n)
    data = synthetic_dataset(ctx.data / f"algr-{n}", cfg)
    day2 = ctx.data / f"algr-{n}-day2" / "catalog"
    if not (day2.parent / "_DONE").exists():
        simulate_next_day(str(data / "catalog"), str(day2), NextDayConfig(), cfg)
        (day2.parent / "_DONE").write_text("")
    return data, day2


def measure_in_child(ctx: BenchContext, n: int, data: Path, day2: Path, attempts: int = 2) -> dict[str, Any]:
    """Run one size in a fresh process (retried once: a shared machine can fail a Ray start-up)."""
    out, log_file = ctx.work / f"size-{n}.json", ctx.work / f"size-{n}.log"
    cmd = [sys.executable, "-m", "bench.bench_memory", "--one-size", str(n), "--catalog", str(data / "catalog"),
           "--day2", str(day2), "--work", str(ctx.work / f"run-{n}"), "--out", str(out),
           "--interval", str(ctx.pick(0.1, 0.5))] + (["--smoke"] if ctx.smoke else [])
    for attempt in range(1, attempts + 1):
        with open(log_file, "w") as logs:
            rc = subprocess.run(cmd, cwd=REPO, stdout=logs, stderr=subprocess.STDOUT).returncode
        if rc == 0:
            break
        tail = log_file.read_text()[-4000:]
        if attempt == attempts:
            raise RuntimeError(f"memory run at {n:,} items failed {attempts} times (exit {rc}); log {log_file}:\n{tail}")
        log.warning("memory run at %d items failed (exit %d), retrying; log tail:\n%s", n, rc, tail[-1500:])
    result = json.loads(out.read_text())
    result["attempts"] = attempt
    result["catalog_gb"] = directory_bytes(data / "catalog") / 1e9
    return result


# ---- the child: one size, fresh Ray --------------------------------------------------------------


def measure_one(n: int, catalog: Path, day2: Path, work: Path, interval: float, smoke: bool) -> dict[str, Any]:
    import ray

    from bench.bench_assign import assignment_job
    from simcit_dist.assign.config import AssignJobConfig

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    artifact = initialised_simcit(catalog, work / "tokenizer")
    start_ray()
    common = dict(tokenizer=artifact, output=str(work / "sids"), num_partitions=8 if smoke else 64, actors=2,
                  encode_batch_size=4096, hit_rate_sample=500 if smoke else 5000, max_suffix=4095,
                  run_dir=str(work / "report"))
    with MemoryMonitor(interval_s=interval) as mon:
        assign = assignment_job(AssignJobConfig(catalog=str(catalog), **common))
        nightly = assignment_job(AssignJobConfig(catalog=str(day2), previous="LATEST", **common))
    report = mon.report()
    for job in (assign, nightly):
        job["us_per_item"] = 1e6 * job["wall_s"] / job["items"]
        t = job["timings"]
        job["resolve_us_per_item"] = 1e6 * (t.get("stage_a_s", float("nan")) + t.get("stage_b_s", float("nan"))) \
            / job["items"]
    memory = report.to_dict()
    memory["workers"] = memory["workers"][:12]  # the largest ones
    shutil.rmtree(work / "sids", ignore_errors=True)
    store_gb = ray.cluster_resources().get("object_store_memory", float("nan")) / 1e9
    return {"items": n, "assign": assign, "nightly": nightly, "memory": memory, "object_store_gb": store_gb}


def child_main() -> None:
    from simcit_dist.logs import setup_logging

    parser = argparse.ArgumentParser()
    parser.add_argument("--one-size", type=int, required=True)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--day2", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    setup_logging("WARNING")
    t = time.time()
    result = measure_one(args.one_size, Path(args.catalog), Path(args.day2), Path(args.work), args.interval,
                         args.smoke)
    result["seconds"] = time.time() - t
    Path(args.out).write_text(dumps(result))


if __name__ == "__main__":
    if "--one-size" in sys.argv:
        child_main()
    else:
        module_main(NAME, TITLE, FIGURES, run)
