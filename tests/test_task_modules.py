"""Modules whose functions run as Ray tasks stay light: a pooled Ray worker imports a task's
module before its first task, and torch plus the job configs cost ~1.5-3 s of CPU (and the
memory) in every such worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "simcit_dist.tokenizer", "simcit_dist.assign.config", "simcit_dist.tokenizer_training.config",
         "simcit_dist.workflows.config")


@pytest.mark.parametrize("module", ["simcit_dist.assign.stages", "simcit_dist.tokenizer_training.pair_views",
                                    "simcit_dist.tokenizer_training.training_rows", "simcit_dist.data.exchange"])
def test_task_module_imports_neither_torch_nor_the_job_configs(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"heavy modules imported by {module}: {out.stdout}"
