"""Typed configs of every job, loaded from ``conf/*.yaml`` with dotted ``key=value`` overrides.

    cfg = load_config(GenerateJobConfig, "conf/synthetic.yaml", ["data.num_items=1000"])

Model sections live beside their models (``simcit_dist.tokenizer.config``,
``simcit_dist.recommender.config``); this module composes them per job. See
``simcit_dist.config_loader`` for the loading and validation rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcit_dist.config_loader import ConfigError, apply_overrides, build, load_config, load_yaml, to_dict
from simcit_dist.data.synthetic import SyntheticConfig
from simcit_dist.storage import StorageConfig

__all__ = [
    "ConfigError",
    "GenerateJobConfig",
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
