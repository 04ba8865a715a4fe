"""The stage tasks' module stays light: a pooled Ray worker imports it before each first task."""

from __future__ import annotations

import subprocess
import sys


def test_stage_tasks_import_neither_torch_nor_the_job_configs() -> None:
    code = ("import sys, simcit_dist.sids.stages; "
            "print(sorted(m for m in ('torch', 'simcit_dist.config', 'simcit_dist.tokenizer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"heavy modules imported by simcit_dist.sids.stages: {out.stdout}"
