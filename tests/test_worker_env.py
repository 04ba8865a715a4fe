"""The worker environment (simcit_dist/worker_env.py) reaches every process that trains, and
PyTorch still honours it."""

from __future__ import annotations

import os
import subprocess
import sys

from simcit_dist.worker_env import WORKER_ENV_VARS
from tests.cluster.test_image import instructions
from tests.jobs_registry import load_job_module


def _big_tensor_offset_in_page(env: dict[str, str]) -> int:
    """data_ptr() mod 4 KiB of a fresh 64 MiB tensor in a new Python with ``env``."""
    code = "import torch; print(torch.empty(16 * 1024 * 1024).data_ptr() % 4096)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_local_ray_workers_and_the_image_get_the_worker_env() -> None:
    env_vars = load_job_module("jobs/_common.py").local_runtime_env()["env_vars"]
    assert WORKER_ENV_VARS.items() <= env_vars.items()
    image_env = " ".join(arg for op, arg in instructions() if op == "ENV")
    for name, value in WORKER_ENV_VARS.items():
        assert f"{name}={value}" in image_env.split(), f"cluster/Dockerfile does not set {name}={value}"


def test_torch_takes_the_huge_page_path_for_large_tensors_with_the_worker_env() -> None:
    # PyTorch's CPU allocator page-aligns (2 MiB where THP is `always`) and madvises a large
    # allocation when THP_MEM_ALLOC_ENABLE is set, and aligns to 64 bytes otherwise: a variable
    # renamed or dropped by a torch upgrade shows here as the 64-byte offset.
    base = {k: v for k, v in os.environ.items() if k not in WORKER_ENV_VARS}
    assert _big_tensor_offset_in_page({**base, **WORKER_ENV_VARS}) == 0
    assert _big_tensor_offset_in_page({**base, "THP_MEM_ALLOC_ENABLE": "0"}) != 0
