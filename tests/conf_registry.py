"""Which config class each ``conf/*.yaml`` loads into (tests load every one of them)."""

from __future__ import annotations

from pathlib import Path

from simcit_dist.config import GenerateJobConfig

CONF = Path(__file__).resolve().parents[1] / "conf"

CONFIGS: dict[Path, type] = {
    CONF / "synthetic.yaml": GenerateJobConfig,
}
