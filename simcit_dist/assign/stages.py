"""Stage A and stage B of SID assignment as Ray tasks (one per exchange partition).

Kept apart from the job module on purpose: a pooled Ray worker imports a task's module before
running it, and the job module brings the tokenizer, torch and the job configs (~3 s of CPU per
worker process), which was most of the stages' wall time on a 1M-item catalog. This module and
everything the tasks receive or return import neither torch nor the job configs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import ray

from simcit_dist.assign.resolve import AssignStats, ClassifyStats, assign_partition, classify_partition
from simcit_dist.data.exchange import read_partition, write_partitions
from simcit_dist.data.parquet_io import write_table
from simcit_dist.storage import Location

FAIL_ENV = "SIMCIT_FAIL_AFTER_PARTITIONS"  # fault injection for tests: stage B fails after N partitions


@dataclass(frozen=True)
class SuffixSettings:
    """What stage B needs of the job config (0 capacity = TIGER-style suffixes only)."""

    max_suffix: int
    capacity: int
    retire_versions: int
    zero_collision: bool = False  # collision=reassign


@ray.remote
def stage_a_task(exchange_a: Location, exchange_b: Location, partition: int, levels: int, same_tokenizer: bool,
                 seq: int, key: list[str], partitions: int) -> ClassifyStats:
    """Rows of one ``item_id`` partition: duplicates, and in nightly mode unchanged / changed /
    new / removed per item; the rows then go to exchange B by ``key`` (the code tuple)."""
    rows, stats = classify_partition(read_partition(exchange_a, partition, "cur"),
                                     read_partition(exchange_a, partition, "prev"), levels, same_tokenizer, seq)
    if rows.num_rows and not stats.duplicates:
        write_partitions(rows, exchange_b, key, partitions, f"a{partition:05d}")
    return stats


@ray.remote
def stage_b_task(exchange_b: Location, out: Location, partition: int, settings: SuffixSettings, levels: int,
                 codebook_size: int, seq: int) -> AssignStats:
    """Suffixes (and capacity moves) of one code-tuple partition, written as its part of the
    version's ``sids/`` and ``retired/``."""
    fail_after = int(os.environ.get(FAIL_ENV, "-1"))
    if 0 <= fail_after <= partition:
        raise RuntimeError(f"injected failure in stage B at partition {partition} ({FAIL_ENV}={fail_after})")
    rows = read_partition(exchange_b, partition)
    if rows is None:
        return AssignStats()
    live, retired, stats = assign_partition(rows, levels, settings.max_suffix, settings.capacity,
                                            settings.retire_versions, seq, codebook_size, settings.zero_collision)
    name = f"part-{partition:05d}.parquet"
    if live.num_rows:
        write_table(live, out.child("sids", name))
    if retired.num_rows:
        write_table(retired, out.child("retired", name))
    return stats
