"""SID assignment and nightly re-tokenization over a whole catalog, published atomically.

Pipeline (every arrow is streaming or one Ray task per partition; no process holds the catalog):

1. encode: Ray Data reads the catalog and an actor pool (``ActorPoolStrategy``) encodes it;
   rows go to exchange A, hash-partitioned by ``item_id`` (the previous version's rows too).
2. stage A (P tasks): duplicate ids; in nightly mode unchanged/changed/new/removed per item.
   Rows go to exchange B, partitioned by the code tuple (or its prefix with capacity mode),
   with the previous version's still-quarantined retired SIDs.
3. stage B (P tasks): suffixes (and capacity moves); each task writes its partition of
   ``sids/`` and ``retired/`` into the staged version directory and returns mergeable stats.
4. metrics and diff; the staged version moves to ``versions/<version>/``, then its manifest,
   then the ``LATEST`` pointer (see ``simcit_dist.assign.publish``).

Everything before step 4 is written under ``<output>/_staging/<version>-<run>/``
(:mod:`simcit_dist.assign.staging`): a killed run leaves nothing under ``versions/``, and the
next run removes its staging directory.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray.data import ActorPoolStrategy

from simcit_dist.assign import publish as pub
from simcit_dist.assign import staging
from simcit_dist.assign.config import AssignJobConfig
from simcit_dist.assign.context import AssignContext, prepare_context
from simcit_dist.assign.encode import EncodeActor
from simcit_dist.assign.export import export_algr, write_vocab
from simcit_dist.assign.quality import catalog_metrics, usage_drift
from simcit_dist.assign.resolve import (
    RETIRED,
    AssignStats,
    ClassifyStats,
    DuplicateItemError,
    stage_b_rows,
)
from simcit_dist.assign.stages import FAIL_ENV, SuffixSettings, stage_a_task, stage_b_task
from simcit_dist.config_loader import to_dict
from simcit_dist.cpu_claims import pool_cpus
from simcit_dist.data.exchange import ExchangeSink, write_partitions
from simcit_dist.data.parquet_io import read_dataset, read_file
from simcit_dist.data.schemas import ITEM_ID
from simcit_dist.data.task_gather import completed
from simcit_dist.sids.manifest import SidManifest
from simcit_dist.sids.table import code_columns, version_dir
from simcit_dist.storage import Location, list_files

log = logging.getLogger(__name__)


@dataclass
class AssignResult:
    version: str
    version_uri: str
    manifest: SidManifest
    already_published: bool


def run_assignment(cfg: AssignJobConfig) -> AssignResult:
    ctx = prepare_context(cfg)
    stale_after_s = cfg.stale_staging_hours * 3600
    done = pub.complete_manifest(ctx.root, ctx.version)
    if done is not None:  # idempotent re-run: same inputs, same version, nothing rewritten
        log.info("version %s is already published; pointing LATEST at it", ctx.version)
        if pub.latest_version(ctx.root) != ctx.version:
            pub.publish(ctx.root, done)
        staging.clear_leftovers(ctx.root, ctx.version, stale_after_s)  # e.g. of a run killed after its manifest
        return AssignResult(ctx.version, version_dir(ctx.root, ctx.version).uri, done, True)
    pub.clear_incomplete(ctx.root, ctx.version)  # a run killed while moving its version into place
    run = staging.start_run(ctx.root, ctx.version, stale_after_s)
    staged = run.child("version")
    start = time.time()
    try:
        timings: dict[str, float] = {}
        t = time.time()
        _encode_into_exchange(ctx, run.child("a"))
        timings["encode_s"] = time.time() - t
        staging.touch(run)
        t = time.time()
        diff = _stage_a(ctx, run.child("a"), run.child("b"))
        timings["stage_a_s"] = time.time() - t
        staging.touch(run)
        t = time.time()
        stats = _stage_b(ctx, run.child("b"), staged)
        timings["stage_b_s"] = time.time() - t
        staging.touch(run)
        manifest = _manifest(ctx, diff, stats, timings, time.time() - start)
        write_vocab(staged, ctx.levels, ctx.codebook_size, stats.max_suffix, ctx.artifact)
        vdir = version_dir(ctx.root, ctx.version)
        if cfg.export_algr:
            exported = export_algr(staged, ctx.levels, ctx.codebook_size)
            manifest.exports = {"algr": vdir.child(posixpath.relpath(exported.path, staged.path)).uri}
        staging.move_into_place(staged, vdir)
        pub.publish(ctx.root, manifest)
    except BaseException:
        pub.clear_incomplete(ctx.root, ctx.version)  # a killed process leaves it for the next run to clear
        raise
    finally:
        staging.finish_run(ctx.root, run)
    return AssignResult(ctx.version, vdir.uri, manifest, False)


def _encode_into_exchange(ctx: AssignContext, exchange: Location) -> None:
    cfg = ctx.cfg
    candidates = cfg.capacity_candidates if cfg.collision in ("capacity", "reassign") else 0
    pool = ActorPoolStrategy(min_size=cfg.actors, max_size=max(cfg.actors, cfg.actors_max))
    encoded = read_dataset(ctx.catalog, columns=[ITEM_ID, *ctx.modalities]).map_batches(
        EncodeActor, batch_size=cfg.encode_batch_size, batch_format="pyarrow", compute=pool,
        num_cpus=pool_cpus(cfg.cpus_per_actor, max(cfg.actors, cfg.actors_max), "encode actors"),
        num_gpus=cfg.gpus_per_actor or None,
        fn_constructor_kwargs={"artifact_uri": ctx.artifact.uri, "storage": cfg.storage,
                               "modalities": ctx.modalities, "candidates": candidates,
                               "threads": max(1, int(cfg.cpus_per_actor))},
    )
    if cfg.actor_start_timeout_s > 0:  # Ray Data's default waits forever for actors that can't be placed
        encoded.context.wait_for_min_actors_s = cfg.actor_start_timeout_s
    try:
        encoded.write_datasink(ExchangeSink(exchange, [ITEM_ID], cfg.num_partitions, "cur",
                                            cfg.exchange_rows_per_write))
    except ray.exceptions.GetTimeoutError as e:
        raise RuntimeError(
            f"the {cfg.actors} encoder actors ({cfg.cpus_per_actor} CPU, {cfg.gpus_per_actor} GPU each) did not "
            f"start within actor_start_timeout_s={cfg.actor_start_timeout_s}: the cluster has "
            f"{ray.cluster_resources()}; lower actors/cpus_per_actor/gpus_per_actor or add nodes") from e
    if ctx.previous is not None:
        prev_sids = version_dir(ctx.root, ctx.previous).child("sids")
        cols = [ITEM_ID, *code_columns(ctx.levels), "suffix", "emb_hash"]
        read_dataset(prev_sids, columns=cols).write_datasink(
            ExchangeSink(exchange, [ITEM_ID], cfg.num_partitions, "prev", cfg.exchange_rows_per_write))


def _stage_a(ctx: AssignContext, exchange_a: Location, exchange_b: Location) -> ClassifyStats:
    cfg = ctx.cfg
    submissions = (stage_a_task.remote(exchange_a, exchange_b, p, ctx.levels, ctx.same_tokenizer, ctx.seq,
                                       ctx.code_key, cfg.num_partitions) for p in range(cfg.num_partitions))
    total = ClassifyStats()
    for stats in _gather(submissions, cfg.num_partitions, "stage A (ids)"):
        total = total.merge(stats)
    if total.duplicates:
        raise DuplicateItemError(f"{ctx.catalog.uri}: {total.duplicates} rows repeat an item_id already in the "
                                 f"catalog (e.g. item_id {total.duplicate_sample[:5]}); nothing was published. "
                                 f"Deduplicate with jobs/prepare_data.py first.")
    if ctx.previous is not None and ctx.same_tokenizer:
        _carry_retired(ctx, exchange_b)
    return total


def _carry_retired(ctx: AssignContext, exchange_b: Location) -> None:
    """Previous retired SIDs still in quarantine go to exchange B as reserved rows."""
    retired = version_dir(ctx.root, str(ctx.previous)).child("retired")
    for i, f in enumerate(list_files(retired, suffix=".parquet")):  # bounded: one file per partition
        table = read_file(f)
        n = table.num_rows
        if not n:
            continue
        codes = np.stack([table.column(c).to_numpy() for c in code_columns(ctx.levels)], axis=1).astype(np.int64)
        cols = {"item_id": table.column(ITEM_ID).to_numpy(), "codes": codes, "dist": np.zeros(n),
                "emb_hash": np.zeros(n, np.int64), "status": np.full(n, RETIRED, np.int8),
                "suffix": table.column("suffix").to_numpy().astype(np.int64),
                "retired_at": table.column("retired_at").to_numpy().astype(np.int64),
                "prev_codes": codes, "prev_suffix": table.column("suffix").to_numpy().astype(np.int64)}
        if ctx.cfg.collision in ("capacity", "reassign"):
            k = ctx.cfg.capacity_candidates
            cols["cand"], cols["cand_dist"] = np.full((n, k), -1, np.int32), np.full((n, k), np.inf, np.float32)
        rows = stage_b_rows(cols, n, ctx.levels)
        write_partitions(rows, exchange_b, ctx.code_key, ctx.cfg.num_partitions, f"retired-{i:05d}")


def _stage_b(ctx: AssignContext, exchange_b: Location, out: Location) -> AssignStats:
    options: dict[str, Any] = {"max_retries": 0}
    if FAIL_ENV in os.environ:  # tests: carry the fault injection to the workers
        options["runtime_env"] = {"env_vars": {FAIL_ENV: os.environ[FAIL_ENV]}}
    settings = SuffixSettings(ctx.cfg.max_suffix, ctx.cfg.capacity if ctx.cfg.collision == "capacity" else 0,
                              ctx.cfg.retire_versions, ctx.cfg.collision == "reassign")
    submissions = (stage_b_task.options(**options).remote(exchange_b, out, p, settings, ctx.levels,
                                                          ctx.codebook_size, ctx.seq)
                   for p in range(ctx.cfg.num_partitions))
    total = AssignStats()
    for stats in _gather(submissions, ctx.cfg.num_partitions, "stage B (codes)"):
        total = total.merge(stats)
    return total


def _gather(submissions: Iterator[ray.ObjectRef], total: int, what: str) -> Iterator[Any]:
    """Task results as they finish (merged on the fly: driver memory stays flat), with progress.

    A bounded window of partitions in flight; on a failure nothing more is submitted and the tasks
    still running are awaited before the error propagates, so none writes into the staging prefix
    or the version directory after the caller has cleaned them up (see :mod:`task_gather`)."""
    done = 0
    for _, stats in completed(submissions):
        done += 1
        if done % 8 == 0 or done == total:
            log.info("%s: %d/%d partitions done", what, done, total)
        yield stats


def _manifest(ctx: AssignContext, diff: ClassifyStats, stats: AssignStats, timings: dict[str, float],
              seconds: float) -> SidManifest:
    manifest = SidManifest(
        version=ctx.version, seq=ctx.seq, num_levels=ctx.levels, codebook_size=ctx.codebook_size,
        max_suffix=int(stats.max_suffix), tokenizer=ctx.artifact.uri, tokenizer_hash=ctx.tokenizer_hash,
        catalog=ctx.catalog.uri, previous=ctx.previous, same_tokenizer=ctx.same_tokenizer,
        settings={k: v for k, v in to_dict(ctx.cfg).items() if k not in ("storage", "run_dir")},
        counts={"items": stats.live_items, "retired_sids": stats.retired_sids,
                "reassigned_by_capacity": stats.reassigned_by_capacity,
                "reassigned_to_free_code": stats.reassigned_to_free_code},
        metrics=catalog_metrics(stats, ctx),
        code_counts=stats.usage.counts.tolist() if stats.usage is not None else [],
        diff={"added": diff.added, "removed": diff.removed, "changed": diff.changed,
              "unchanged": diff.unchanged, "changed_kept_sid": diff.changed_kept_sid,
              "sid_changed": stats.sid_changed},
    )
    if ctx.previous_manifest is not None and stats.usage is not None:
        manifest.diff["usage_drift"] = usage_drift(ctx.previous_manifest.code_counts, stats.usage)
    log.info("assignment %s: %d items, %d code groups, max %d per code, timings %s (%.1fs total)", ctx.version,
             stats.live_items, stats.groups.num_unique, stats.groups.max_per_sid,
             {k: round(v, 1) for k, v in timings.items()}, seconds)
    return manifest
