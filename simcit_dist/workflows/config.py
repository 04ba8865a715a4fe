"""Typed configs of the workflows: ``jobs/pipeline.py`` (the demo) and ``jobs/compare_tokenizers.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from simcit_dist.assign.config import AssignJobConfig
from simcit_dist.inputs.config import GenerateJobConfig, PrepareJobConfig
from simcit_dist.inputs.next_day import NextDayConfig
from simcit_dist.recommender.config import RecommenderTrainConfig, TrainRecommenderJobConfig
from simcit_dist.recommender.sasrec.config import SasrecModelConfig, default_sasrec_train
from simcit_dist.storage import StorageConfig
from simcit_dist.tokenizer.config import TokenizerConfig
from simcit_dist.tokenizer_training.config import (
    TokenizerDataConfig,
    TokenizerJobConfig,
    TokenizerTrainConfig,
)


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
class CompareSasrecSection:
    """``sasrec:`` of compare: the ID-based baseline row (SASRec, full softmax) beside most-popular.

    Its split and evaluation are the recommender's (``recommender.data``, ``recommender.eval``);
    only the history it reads is its own (``max_history``: RecBole uses 50)."""

    enabled: bool = True
    max_history: int = 50
    model: SasrecModelConfig = field(default_factory=SasrecModelConfig)
    train: RecommenderTrainConfig = field(default_factory=default_sasrec_train)

    def __post_init__(self) -> None:
        if self.max_history < 1:
            raise ValueError(f"sasrec.max_history must be >= 1, got {self.max_history}")


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
    sasrec: CompareSasrecSection = field(default_factory=CompareSasrecSection)
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
