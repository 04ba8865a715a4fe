"""bench/gpu_check.sh: the CPU dry run checks its plumbing and JSON shape; without a GPU the real
run stops at once with one clear line (issue 26, GPU readiness)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "GPU_CHECK_PYTHON": sys.executable, "GPU_CHECK_OUT": str(out)}
    run = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    from bench.gpu_check import SECTIONS

    assert set(SECTIONS) <= set(result) and result["dry_run"] is True
    assert result["environment"]["device"] == "cpu" and result["environment"]["cpu"]
    assert result["cuda_tests"]["status"].startswith("skipped")
    assert result["tokenizer_step"]["b256"]["ours_cpu_samples_per_s"] > 0
    assert result["assign_encode"]["items_per_s"] > 0
    rec = result["recommender"]
    assert rec["train_fp32_examples_per_s"] > 0 and rec["train_bf16_examples_per_s"] > 0
    assert rec["decode_users_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_the_real_run_stops_with_one_line() -> None:
    run = subprocess.run([sys.executable, "bench/gpu_check.py"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("gpu_check failed: no CUDA GPU (torch ")
    shell = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=REPO, capture_output=True, text=True, timeout=60)
    if shell.returncode == 2 and "nvidia-smi" in shell.stderr:  # no driver either: the shell check stops first
        assert shell.stderr.strip().splitlines()[-1].startswith("gpu_check: failed: no NVIDIA GPU")
