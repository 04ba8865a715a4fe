"""Typed config of ``jobs/assign_sids.py`` (SID assignment and nightly re-tokenization)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from simcit_dist.data.run_output import default_run_dir
from simcit_dist.storage import StorageConfig


@dataclass
class AssignJobConfig:
    """``jobs/assign_sids.py``: SIDs for a whole catalog, or a nightly re-tokenization.

    Publishes ``<output>/versions/<version>/`` and then the ``<output>/LATEST`` pointer.
    """

    catalog: str = "runs/data/synthetic/catalog"
    tokenizer: str = "runs/ray/tokenizer-demo/tokenizer"  # artifact location
    output: str = "runs/sids"  # SID root
    previous: str | None = None  # a published version name, or "LATEST": nightly mode
    # suffix: TIGER-style suffix tokens; capacity: FORGE cap per code, overflow to the nearest code with
    # room; reassign: zero-collision, colliding items to free last-level codes by min-cost assignment
    collision: Literal["suffix", "capacity", "reassign"] = "suffix"
    max_suffix: int = 255  # suffix values 0..max_suffix; more items on one code tuple is an error
    capacity: int = 1  # collision=capacity: items per full code before reassignment (FORGE)
    capacity_candidates: int = 8  # nearest last-level codes a moved item may take (capacity and reassign)
    retire_versions: int = 7  # a retired SID is not re-used for this many versions
    num_partitions: int = 64  # hash partitions of the exchange (memory per task ~ catalog / P)
    encode_batch_size: int = 4096
    actors: int = 2  # encoder actors (each loads the tokenizer once)
    actors_max: int = 0  # autoscale the pool up to this many (0 = fixed size)
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    actor_start_timeout_s: int = 900  # fail (not wait forever) when the cluster can't place the actors; 0 = wait
    exchange_rows_per_write: int = 262_144
    hit_rate_sample: int = 5000  # items of the embedding HitRate@K sample (0 = skip)
    hit_rate_k: int = 10
    stale_staging_hours: float = 24.0  # a dead run's staging dir of other inputs is removed after this
    export_algr: bool = False  # also write AL-GR token strings C{l1}C{l2+K}C{l3+2K}
    run_dir: str = ""  # report.md, metrics.json, code_usage.png; "" = derived from output (default_run_dir)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        self.run_dir = self.run_dir or default_run_dir("assign", self.output)
        if self.max_suffix < 0 or self.capacity < 1 or self.capacity_candidates < 1:
            raise ValueError("max_suffix must be >= 0, capacity and capacity_candidates >= 1")
        if self.num_partitions < 1 or self.encode_batch_size < 1 or self.actors < 1:
            raise ValueError("num_partitions, encode_batch_size and actors must be >= 1")
        if self.actors_max and self.actors_max < self.actors:
            raise ValueError(f"actors_max ({self.actors_max}) must be 0 or >= actors ({self.actors})")
        if self.stale_staging_hours <= 0:
            raise ValueError(f"stale_staging_hours must be > 0, got {self.stale_staging_hours}")
        if self.retire_versions < 0:
            raise ValueError(f"retire_versions must be >= 0, got {self.retire_versions}")
