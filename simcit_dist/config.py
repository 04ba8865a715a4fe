"""Typed configs of every job, loaded from ``conf/*.yaml`` with dotted ``key=value`` overrides.

    cfg = load_config(GenerateJobConfig, "conf/synthetic.yaml", ["data.num_items=1000"])

Model sections live beside their models (``simcit_dist.tokenizer.config``,
``simcit_dist.recommender.config``); this module composes them per job. See
``simcit_dist.config_loader`` for the loading and validation rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from simcit_dist.config_loader import ConfigError, apply_overrides, build, load_config, load_yaml, to_dict
from simcit_dist.data.job_configs import ConvertJobConfig, PrepareJobConfig
from simcit_dist.data.next_day import NextDayConfig
from simcit_dist.data.synthetic import SyntheticConfig
from simcit_dist.recommender.config import EvaluateJobConfig, TrainRecommenderJobConfig
from simcit_dist.storage import StorageConfig
from simcit_dist.tokenizer.config import TokenizerConfig

__all__ = [
    "ConfigError",
    "AssignJobConfig",
    "CompareJobConfig",
    "ConvertJobConfig",
    "EvaluateJobConfig",
    "GenerateJobConfig",
    "NextDayConfig",
    "PipelineConfig",
    "PrepareJobConfig",
    "RunSection",
    "TokenizerDataConfig",
    "TokenizerJobConfig",
    "TokenizerTrainConfig",
    "TrainRecommenderJobConfig",
    "StorageConfig",
    "apply_overrides",
    "build",
    "load_config",
    "load_yaml",
    "to_dict",
]


@dataclass
class GenerateJobConfig:
    """``jobs/generate_synthetic.py``: a synthetic catalog, pairs and interactions."""

    output: str = "runs/data/synthetic"
    num_tasks: int = 8
    with_pairs: bool = True
    with_interactions: bool = True
    data: SyntheticConfig = field(default_factory=SyntheticConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        if self.num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {self.num_tasks}")


@dataclass
class RunSection:
    """Where a run's state goes. ``storage_path``/``name`` are Ray Train's ``RunConfig``: checkpoints
    land in ``<storage_path>/<name>/`` (local or s3://) and re-running the same name resumes.
    ``run_dir`` is a local directory for the human-facing report (markdown, plots, metrics.json)."""

    storage_path: str = "runs/ray"
    name: str = "tokenizer"
    run_dir: str = "runs/tokenizer"
    artifact: str | None = None  # final tokenizer; None -> <storage_path>/<name>/tokenizer

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"run.name must be a non-empty name without '/', got {self.name!r}")

    def artifact_uri(self) -> str:
        return self.artifact or f"{self.storage_path.rstrip('/')}/{self.name}/tokenizer"


@dataclass
class TokenizerDataConfig:
    """Training inputs of the tokenizer job."""

    catalog: str = "runs/data/synthetic/catalog"
    modalities: list[str] = field(default_factory=list)  # embedding columns; [] = every one in the catalog
    pairs: str | None = None  # co-occurrence pairs -> the partner (behavioural) view
    pair_views: str | None = None  # where the joined item+partner table is written; None -> under the run
    join_partitions: int = 16  # hash partitions of the Ray Data pair join
    # Items (by id hash) the pair view is built for, and so trained on. The view holds ~(1 + 2 pairs per
    # item) rows of two embeddings per catalog item: a run that consumes only part of it (few steps
    # over a huge catalog) can build that part alone.
    pair_view_fraction: float = 1.0
    holdout_fraction: float = 0.01  # items held back (by item_id hash) for the end-of-training SID metrics
    holdout_max_items: int = 20_000
    shuffle_files: bool = True  # new file order every epoch (seeded)
    shuffle_buffer: int = 16_384  # rows in each worker's local shuffle buffer (0 = off)
    seed: int = 0
    # Ray Data hands blocks to the workers in arrival order, so batches (and with them the k-means
    # init and the weights) differ run to run. True: blocks keep their order (preserve_order) and are
    # split without locality, so the same inputs and seed give the same tokenizer; blocks then wait
    # for earlier ones, which can cost throughput on a cluster.
    deterministic: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_fraction < 0.5:
            raise ValueError(f"holdout_fraction must be in [0, 0.5), got {self.holdout_fraction}")
        if not 0.0 < self.pair_view_fraction <= 1.0:
            raise ValueError(f"pair_view_fraction must be in (0, 1], got {self.pair_view_fraction}")
        if self.join_partitions < 1 or self.holdout_max_items < 0 or self.shuffle_buffer < 0:
            raise ValueError("join_partitions must be >= 1; holdout_max_items and shuffle_buffer >= 0")


@dataclass
class TokenizerTrainConfig:
    """Ray Train DDP settings. ``batch_size`` is the GLOBAL batch: every worker takes
    ``batch_size / num_workers`` rows and the contrastive loss sees all of them as negatives."""

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: int = 1
    torch_threads: int = 0  # per worker; 0 = cpus_per_worker
    batch_size: int = 8192
    epochs: int = 1
    max_steps: int = 0  # 0 = epochs x (rows // batch_size)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # GPU only
    log_every: int = 10
    checkpoint_every: int = 100
    num_to_keep: int = 2
    max_failures: int = 0

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"train.num_workers must be >= 1, got {self.num_workers}")
        if self.batch_size < 2 or self.batch_size % self.num_workers:
            raise ValueError(
                f"train.batch_size ({self.batch_size}) must be >= 2 and divisible by train.num_workers "
                f"({self.num_workers}): every worker takes an equal share of the global batch"
            )
        if self.epochs < 1 or self.max_steps < 0:
            raise ValueError("train.epochs must be >= 1 and train.max_steps >= 0")
        if self.lr <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("train.lr must be > 0 and train.min_lr_ratio in [0, 1]")
        if min(self.log_every, self.checkpoint_every, self.num_to_keep) < 1:
            raise ValueError("train.log_every, checkpoint_every and num_to_keep must be >= 1")
        if self.mixed_precision != "no" and not self.use_gpu:
            raise ValueError("train.mixed_precision needs train.use_gpu=true (CPU trains in fp32)")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.max_failures < 0:
            raise ValueError("train.warmup_steps, grad_clip and max_failures must be >= 0")


@dataclass
class TokenizerJobConfig:
    """``jobs/train_tokenizer.py``: distributed tokenizer training."""

    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    run: RunSection = field(default_factory=RunSection)
    storage: StorageConfig = field(default_factory=StorageConfig)


@dataclass
class AssignJobConfig:
    """``jobs/assign_sids.py``: SIDs for a whole catalog, or a nightly re-tokenization.

    Publishes ``<output>/versions/<version>/`` and then the ``<output>/LATEST`` pointer.
    """

    catalog: str = "runs/data/synthetic/catalog"
    tokenizer: str = "runs/ray/tokenizer-demo/tokenizer"  # artifact location
    output: str = "runs/sids"  # SID root
    previous: str | None = None  # a published version name, or "LATEST": nightly mode
    collision: Literal["suffix", "capacity"] = "suffix"
    max_suffix: int = 255  # suffix values 0..max_suffix; more items on one code tuple is an error
    capacity: int = 1  # collision=capacity: items per full code before reassignment (FORGE)
    capacity_candidates: int = 8  # nearest last-level codes tried for an overflow item
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
    export_algr: bool = False  # also write AL-GR token strings C{l1}C{l2+K}C{l3+2K}
    run_dir: str = "runs/assign"
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        if self.max_suffix < 0 or self.capacity < 1 or self.capacity_candidates < 1:
            raise ValueError("max_suffix must be >= 0, capacity and capacity_candidates >= 1")
        if self.num_partitions < 1 or self.encode_batch_size < 1 or self.actors < 1:
            raise ValueError("num_partitions, encode_batch_size and actors must be >= 1")
        if self.actors_max and self.actors_max < self.actors:
            raise ValueError(f"actors_max ({self.actors_max}) must be 0 or >= actors ({self.actors})")
        if self.retire_versions < 0:
            raise ValueError(f"retire_versions must be >= 0, got {self.retire_versions}")


@dataclass
class PipelineConfig:
    """``jobs/pipeline.py`` (``make demo``): every stage end to end under one run directory.

    Paths inside the stage sections are ignored: the pipeline wires each stage's output to the
    next stage's input under ``run_dir`` (data/, ray/, sids/, tokenizer/, recommender/ ...).
    """

    run_dir: str = "runs/demo"
    stages: list[Literal["generate", "prepare", "tokenizer", "assign", "retokenize", "recommender"]] = field(
        default_factory=lambda: ["generate", "prepare", "tokenizer", "assign", "retokenize", "recommender"])
    generate: GenerateJobConfig = field(default_factory=GenerateJobConfig)
    prepare: PrepareJobConfig = field(default_factory=PrepareJobConfig)
    tokenizer: TokenizerJobConfig = field(default_factory=TokenizerJobConfig)
    assign: AssignJobConfig = field(default_factory=AssignJobConfig)
    next_day: NextDayConfig = field(default_factory=NextDayConfig)
    recommender: TrainRecommenderJobConfig = field(default_factory=TrainRecommenderJobConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)


@dataclass
class CompareJobConfig:
    """``jobs/compare_tokenizers.py``: the same recommender on SIDs from several tokenizers.

    Every tokenizer in ``tokenizers`` is trained with ``train`` on the same catalog (and pairs),
    its SIDs assigned with ``assign``'s knobs, and the recommender trained and evaluated with the
    same settings and seeds; ``external`` adds SID tables made elsewhere (LETTER-style JSON index
    files ``{"<item>": ["<a_12>", "<b_3>", ...]}``, item keys = catalog item ids).
    """

    catalog: str = "runs/demo/data/prepared/catalog"
    pairs: str | None = "runs/demo/data/prepared/pairs"
    interactions: str = "runs/demo/data/prepared/interactions"
    output: str = "runs/compare/demo"
    tokenizers: dict[str, TokenizerConfig] = field(default_factory=lambda: {
        "simcit": TokenizerConfig(kind="simcit"), "rqvae": TokenizerConfig(kind="rqvae"),
        "rqkmeans": TokenizerConfig(kind="rqkmeans")})
    external: dict[str, str] = field(default_factory=dict)  # name -> JSON index file
    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)  # paths ignored
    train: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    assign: AssignJobConfig = field(default_factory=AssignJobConfig)  # paths ignored
    recommender: TrainRecommenderJobConfig = field(default_factory=TrainRecommenderJobConfig)  # paths ignored
    title: str = "Tokenizer comparison"
    # [] = one run with the seeds the sections set. [s1, s2, ...] = the whole comparison once per seed
    # (data order, tokenizer init, resets and the recommender all seeded with s) under <output>/seed-<s>,
    # and a mean ± std table over the seeds in <output>.
    seeds: list[int] = field(default_factory=list)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        if not self.tokenizers and not self.external:
            raise ValueError("compare needs at least one entry in tokenizers or external")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be distinct non-negative integers, got {self.seeds}")
        clash = set(self.tokenizers) & set(self.external)
        if clash:
            raise ValueError(f"names used both as tokenizer and external table: {sorted(clash)}")
