"""SID assignment: the job vs a bare Ray Data read of the same files vs a single-process encode loop,
and the cost per item of collision resolution and nightly re-tokenization as the catalog grows.

- bare read: ``read_dataset(catalog).iter_batches`` drained in the driver at the job's encode
  batch size (before and after the job, averaged);
- job: ``run_assignment`` end to end (encode actor pool, two hash exchanges through storage,
  metrics, publish); its stage times come from the job's own log line;
- single-process loop: ``encode_table`` over the Parquet files' batches in this process, with all
  of the machine's cores as torch threads;
- resolution: the job's per-partition logic (``classify_partition`` + ``assign_partition`` and
  the in-memory splits of both exchanges) on synthetic encoder output, in one process, at two
  catalog sizes with a fixed partition count: a full assignment and a nightly re-tokenization
  (2 % removed, 3 % changed, 3 % added). Linear scaling = equal cost per item.
- exchange reads on S3: stage B's reads of every partition from every writer's file on a moto
  server (its own process), fetched one file after another vs several at once. moto's requests
  cost its CPU, not network time, so the gain here is overlap of client and server work; on real
  S3 the concurrent fetches hide network latency instead.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.common import (
    ALGR_MODALITIES,
    BenchContext,
    BenchResult,
    algr_like,
    captured_logs,
    initialised_simcit,
    module_main,
    moto_s3,
    ratio,
    synthetic_dataset,
    torch_threads,
)

NAME = "assign"
TITLE = "SID assignment throughput and collision-resolution / re-tokenization cost vs catalog size"
FIGURES = [
    "read_items_per_s", "job_items_per_s", "job_vs_read", "encode_stage_items_per_s",
    "single_process_items_per_s", "job_vs_single_process", "encode_only_items_per_s_per_core",
    "encode_stage_vs_cores_bound", "encode_algr_items_per_s_per_core",
    "resolve_us_per_item_small", "resolve_us_per_item_large", "resolve_scaling",
    "retokenize_us_per_item_small", "retokenize_us_per_item_large", "retokenize_scaling",
    "exchange_s3_ms_per_file_sequential", "exchange_s3_ms_per_file",
]
LEVELS, CODEBOOK = 3, 256
MAX_SUFFIX = 4095  # the untrained (k-means initialised) tokenizer collides more than a trained one


def run(ctx: BenchContext) -> BenchResult:
    res = BenchResult()
    num_items = ctx.pick(20_000, 1_000_000)
    data = synthetic_dataset(ctx.data / f"algr-{num_items}", algr_like(num_items))
    catalog = data / "catalog"
    artifact = initialised_simcit(catalog, ctx.work / "tokenizer")
    cfg = assign_config(ctx, str(catalog), artifact)
    res.details["setup"] = {"num_items": num_items, "modalities": ALGR_MODALITIES, "num_partitions": cfg.num_partitions,
                            "actors": cfg.actors, "encode_batch_size": cfg.encode_batch_size,
                            "tokenizer": "SimCITConfig() defaults, k-means initialised (untrained)"}

    before = bare_read(str(catalog), cfg.encode_batch_size)
    job = assignment_job(cfg)
    after = bare_read(str(catalog), cfg.encode_batch_size)
    read = 0.5 * (before + after)
    single = single_process_encode(catalog, artifact, cfg.encode_batch_size, ctx.pick(20_000, 200_000))
    res.details.update(read={"before": before, "after": after}, job=job, single_process=single)
    res.add("read_items_per_s", read, "items/s", note="Ray Data read drained in the driver")
    res.add("job_items_per_s", job["items_per_s"], "items/s", note="whole job: encode, 2 exchanges, metrics, publish")
    res.add("job_vs_read", ratio(job["items_per_s"], read), "x", (">=", 0.8))
    res.add("encode_stage_items_per_s", job["encode_items_per_s"], "items/s", note="read + encode + exchange A write")
    res.add("single_process_items_per_s", single["items_per_s"], "items/s",
            note=f"encode_table loop, {single['threads']} torch threads")
    res.add("job_vs_single_process", ratio(job["items_per_s"], single["items_per_s"]), "x")
    # When reading and encoding share the same cores (this machine), the encode stage cannot beat
    # doing both back to back with all cores: 1 / (1/read + 1/encode), where read is the warm read
    # after the job (the one before pays Ray's worker starts) and encode the encode alone, at one
    # torch thread per core as the actors run it (a single process's decode is not counted twice).
    encode_only = encode_only_per_core(catalog, artifact, cfg.encode_batch_size, ctx.pick(8192, 65_536))
    res.details["encode_only"] = encode_only
    cores = os.cpu_count() or 1
    res.add("encode_only_items_per_s_per_core", encode_only["items_per_s"], "items/s",
            note="encode_table on decoded batches, 1 torch thread")
    cores_bound = 1.0 / (1.0 / after + 1.0 / (cores * encode_only["items_per_s"]))
    res.add("encode_stage_vs_cores_bound", ratio(job["encode_items_per_s"], cores_bound), "x",
            note=f"vs 1/(1/warm read + 1/({cores} x encode per core)) = {cores_bound:,.0f} items/s on the same cores")
    algr = single_process_encode(catalog, algr_artifact(ctx, catalog), cfg.encode_batch_size, ctx.pick(8192, 65_536),
                                 threads=1)
    res.details["encode_algr_k8192"] = algr
    res.add("encode_algr_items_per_s_per_core", algr["items_per_s"], "items/s",
            note="AL-GR tokenizer (K=8192 x 3), 1 torch thread: the nightly job's CPU cost")

    sizes = ctx.pick((25_000, 100_000), (1_000_000, 4_000_000))
    partitions = ctx.pick(8, 64)
    costs = {n: resolution_costs(n, partitions) for n in sizes}
    res.details["resolution"] = {"partitions": partitions, "sizes": {str(n): c for n, c in costs.items()}}
    small, large = (costs[n] for n in sizes)
    label = f"{sizes[0]:,} items"
    res.add("resolve_us_per_item_small", small["assign_us_per_item"], "us/item", note=label)
    res.add("resolve_us_per_item_large", large["assign_us_per_item"], "us/item", note=f"{sizes[1]:,} items")
    res.add("resolve_scaling", ratio(large["assign_us_per_item"], small["assign_us_per_item"]), "x", ("<=", 1.3),
            note=f"per-item cost at {sizes[1] // sizes[0]}x the items (1 = linear)")
    res.add("retokenize_us_per_item_small", small["nightly_us_per_item"], "us/item", note=label)
    res.add("retokenize_us_per_item_large", large["nightly_us_per_item"], "us/item", note=f"{sizes[1]:,} items")
    res.add("retokenize_scaling", ratio(large["nightly_us_per_item"], small["nightly_us_per_item"]), "x",
            ("<=", 1.3), note=f"per-item cost at {sizes[1] // sizes[0]}x the items (1 = linear)")

    writers, parts = ctx.pick((8, 8), (32, 32))
    exchange = exchange_read_s3(writers, parts, ctx.pick(2_000, 20_000))
    res.details["exchange_s3"] = exchange
    label = f"moto S3 server process, {writers} files x {parts} partitions"
    res.add("exchange_s3_ms_per_file_sequential", exchange["sequential_ms_per_file"], "ms",
            note=f"{label}, one file after another")
    res.add("exchange_s3_ms_per_file", exchange["concurrent_ms_per_file"], "ms",
            note=f"{label}, {exchange['fetch_threads']} files at once")
    return res


def exchange_read_s3(writers: int, partitions: int, rows_per_writer: int) -> dict[str, Any]:
    """Stage B's reads on S3: every partition's segment from every writer's file, fetched one
    file after another vs ``FETCH_THREADS`` at once (ms per (partition, file) pair, whole reads)."""
    from simcit_dist.data import exchange as ex
    from simcit_dist.storage import resolve

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"writers": writers, "partitions": partitions, "rows_per_writer": rows_per_writer,
                           "fetch_threads": ex.FETCH_THREADS}
    with moto_s3(own_process=True) as (bucket, storage):
        loc = resolve(f"{bucket}/exchange", storage)
        for w in range(writers):
            ids = rng.choice(2**40, rows_per_writer, replace=False)
            ex.write_partitions(pa.table(encoded_rows(ids, rng)), loc, ["c1", "c2", "c3"], partitions, f"b-{w:05d}")
        for name, threads in (("sequential", 1), ("concurrent", ex.FETCH_THREADS)):
            start = time.perf_counter()
            tables = [ex.read_partition(loc, p, fetch_threads=threads) for p in range(partitions)]
            out[f"{name}_ms_per_file"] = (time.perf_counter() - start) * 1e3 / (writers * partitions)
            rows = sum(t.num_rows for t in tables if t is not None)
            assert rows == writers * rows_per_writer, (name, rows)
    return out


def assign_config(ctx: BenchContext, catalog: str, artifact: str, **overrides: Any) -> Any:
    from simcit_dist.assign.config import AssignJobConfig

    base: dict[str, Any] = dict(catalog=catalog, tokenizer=artifact,
                                output=str(ctx.work / f"sids-{uuid.uuid4().hex[:6]}"),
                                num_partitions=ctx.pick(8, 64), actors=2, encode_batch_size=4096,
                                hit_rate_sample=ctx.pick(500, 5000), max_suffix=MAX_SUFFIX,
                                run_dir=str(ctx.work / "assign-report"))
    base.update(overrides)
    return AssignJobConfig(**base)


def bare_read(catalog: str, batch_size: int, storage: Any = None) -> float:
    from simcit_dist.data.parquet_io import read_dataset
    from simcit_dist.data.schemas import ITEM_ID

    start = time.perf_counter()
    rows = 0
    ds = read_dataset(catalog, storage, columns=[ITEM_ID, *ALGR_MODALITIES])
    for b in ds.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
        rows += b.num_rows
    return rows / (time.perf_counter() - start)


def assignment_job(cfg: Any) -> dict[str, Any]:
    """Run the job; returns wall time, items/s and the stage times it logs."""
    from simcit_dist.assign.job import run_assignment

    with captured_logs("simcit_dist.assign.job") as records:
        t = time.perf_counter()
        result = run_assignment(cfg)
        wall = time.perf_counter() - t
    items = result.manifest.items
    timings = stage_timings(records)
    return {"items": items, "wall_s": wall, "items_per_s": items / wall, "timings": timings,
            "encode_items_per_s": items / timings["encode_s"] if timings.get("encode_s") else math.nan,
            "version": result.version, "manifest_metrics": result.manifest.metrics,
            "diff": result.manifest.diff, "max_suffix": result.manifest.max_suffix}


def stage_timings(records: list[Any]) -> dict[str, float]:
    """The ``timings`` dict of the job's summary log line (encode_s, stage_a_s, stage_b_s); {} if absent."""
    for r in records:
        if isinstance(r.msg, str) and r.msg.startswith("assignment %s") and isinstance(r.args, tuple):
            found = [a for a in r.args if isinstance(a, dict)]
            if found:
                return {k: float(v) for k, v in found[0].items()}
    return {}


def algr_artifact(ctx: BenchContext, catalog: Path) -> str:
    """A k-means initialised tokenizer with the AL-GR preset's model (conf/tokenizer_algr.yaml)."""
    from simcit_dist.tokenizer import SimCITConfig, TokenizerConfig

    cfg = TokenizerConfig(kind="simcit", simcit=SimCITConfig(hidden_dims=[512, 256, 128], latent_dim=96, proj_dim=96,
                                                             num_levels=3, codebook_size=8192, kmeans_iters=2))
    return initialised_simcit(catalog, ctx.work / "tokenizer-algr", cfg, sample=16_384)


def catalog_batches(catalog: Path, batch_size: int, max_items: int) -> Iterator[pa.Table]:
    """The catalog's first ~``max_items`` rows (whole batches, in file order), decoded lazily."""
    from simcit_dist.data.parquet_io import iter_file_batches
    from simcit_dist.data.schemas import ITEM_ID
    from simcit_dist.storage import resolve

    columns = [ITEM_ID, *ALGR_MODALITIES]
    stream = (pa.Table.from_batches([batch]) for f in sorted(catalog.glob("*.parquet"))
              for _, batch in iter_file_batches(resolve(str(f)), columns, batch_size))
    return itertools.islice(stream, math.ceil(max_items / batch_size))


def encode_only_per_core(catalog: Path, artifact: str, batch_size: int, max_items: int) -> dict[str, Any]:
    """``encode_table`` alone on batches decoded beforehand, one torch thread (an actor's setting)."""
    from simcit_dist.assign.encode import encode_table
    from simcit_dist.storage import resolve
    from simcit_dist.tokenizer import load_artifact

    tokenizer, _, _ = load_artifact(resolve(artifact))
    batches = list(catalog_batches(catalog, batch_size, max_items))
    items = sum(b.num_rows for b in batches)
    with torch_threads(1):
        encode_table(tokenizer, batches[0], list(ALGR_MODALITIES))  # first-call allocations out of the timing
        start = time.perf_counter()
        for b in batches:
            encode_table(tokenizer, b, list(ALGR_MODALITIES))
        seconds = time.perf_counter() - start
    return {"threads": 1, "items": items, "seconds": seconds, "items_per_s": items / seconds}


def single_process_encode(catalog: Path, artifact: str, batch_size: int, max_items: int,
                          threads: int | None = None) -> dict[str, Any]:
    """Decode and encode in this process, back to back (the decode is inside the timing)."""
    from simcit_dist.assign.encode import encode_table
    from simcit_dist.storage import resolve
    from simcit_dist.tokenizer import load_artifact

    threads = threads or os.cpu_count() or 1
    tokenizer, _, _ = load_artifact(resolve(artifact))
    items = 0
    with torch_threads(threads):
        start = time.perf_counter()
        for batch in catalog_batches(catalog, batch_size, max_items):
            encode_table(tokenizer, batch, list(ALGR_MODALITIES))
            items += batch.num_rows
        seconds = time.perf_counter() - start
    return {"threads": threads, "items": items, "seconds": seconds, "items_per_s": items / seconds}


# ---- collision resolution and re-tokenization logic ---------------------------------------------


def encoded_rows(item_ids: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Encoder output shaped like a trained 3 x 256 tokenizer's: skewed code usage, so code tuples collide."""
    n = len(item_ids)
    weights = 1.0 / (np.arange(CODEBOOK) + 10.0)
    weights /= weights.sum()
    codes = [rng.choice(CODEBOOK, size=n, p=weights).astype(np.int32) for _ in range(LEVELS)]
    return {"item_id": item_ids.astype(np.int64), "c1": codes[0], "c2": codes[1], "c3": codes[2],
            "dist": rng.random(n, dtype=np.float32), "emb_hash": rng.integers(-2**62, 2**62, size=n)}


def next_day(day1: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """2 % removed, 3 % changed (half of them move to new codes), 3 % new items."""
    n = len(day1["item_id"])
    u = rng.random(n)
    keep = u >= 0.02
    changed = keep & (u < 0.05)
    moved = changed & (rng.random(n) < 0.5)
    out = {k: v.copy() for k, v in day1.items()}
    out["emb_hash"][changed] = rng.integers(-2**62, 2**62, size=int(changed.sum()))
    fresh = encoded_rows(np.arange(int(moved.sum())), rng)
    for c in ("c1", "c2", "c3"):
        out[c][moved] = fresh[c]
    added = encoded_rows(day1["item_id"].max() + 1 + np.arange(int(0.03 * n)), rng)
    return {k: np.concatenate([out[k][keep], added[k]]) for k in out}


def _exchange(tables: list[pa.Table], key: list[str], partitions: int) -> list[pa.Table | None]:
    """The in-memory equivalent of the job's storage exchange: split every table by key hash, regroup."""
    from simcit_dist.data.exchange import split_by_partition

    parts: list[list[pa.Table]] = [[] for _ in range(partitions)]
    for t in tables:
        for p, rows in split_by_partition(t, key, partitions):
            parts[p].append(rows)
    return [pa.concat_tables(p) if p else None for p in parts]


def resolve_catalog(current: pa.Table, previous: pa.Table | None, partitions: int, seq: int
                    ) -> tuple[pa.Table, float, float]:
    """Stage A then stage B over all partitions: (live SID table, stage A s, stage B s)."""
    from simcit_dist.assign.resolve import assign_partition, classify_partition
    from simcit_dist.sids.table import code_columns

    t = time.perf_counter()
    cur_parts = _exchange([current], ["item_id"], partitions)
    prev_parts = _exchange([previous], ["item_id"], partitions) if previous is not None else [None] * partitions
    to_b = [classify_partition(c, p, LEVELS, previous is not None, seq)[0] for c, p in zip(cur_parts, prev_parts)]
    b_parts = _exchange(to_b, code_columns(LEVELS), partitions)
    stage_a = time.perf_counter() - t
    t = time.perf_counter()
    live = [assign_partition(rows, LEVELS, MAX_SUFFIX, 0, 7, seq, CODEBOOK)[0] for rows in b_parts if rows is not None]
    stage_b = time.perf_counter() - t
    return pa.concat_tables(live), stage_a, stage_b


def resolution_costs(num_items: int, partitions: int) -> dict[str, float]:
    rng = np.random.default_rng(num_items)
    day1 = pa.table(encoded_rows(np.arange(num_items, dtype=np.int64) + 1000, rng))
    live, a1, b1 = resolve_catalog(day1, None, partitions, seq=1)
    previous = live.select(["item_id", "c1", "c2", "c3", "suffix", "emb_hash"])
    day2 = pa.table(next_day({k: day1.column(k).to_numpy() for k in day1.column_names}, rng))
    _, a2, b2 = resolve_catalog(day2, previous, partitions, seq=2)
    return {"items": num_items, "assign_stage_a_s": a1, "assign_stage_b_s": b1,
            "assign_us_per_item": 1e6 * (a1 + b1) / num_items, "nightly_items": day2.num_rows,
            "nightly_stage_a_s": a2, "nightly_stage_b_s": b2,
            "nightly_us_per_item": 1e6 * (a2 + b2) / day2.num_rows}


if __name__ == "__main__":
    module_main(NAME, TITLE, FIGURES, run)
