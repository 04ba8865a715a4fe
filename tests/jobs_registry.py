"""Find the job and config class behind each ``conf/*.yaml`` (from the header's run command).

Every YAML's header names the command that runs it (``python jobs/<job>.py --config ...``), and
every job module exposes ``CONFIG_CLASS``; tests use both to load every config (and the cluster
manifests' entrypoints) with the project's own loader.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
JOB_IN_HEADER = re.compile(r"python (jobs/\w+\.py)")


def load_job_module(job_path: str) -> ModuleType:
    path = REPO / job_path
    if not path.is_file():
        raise FileNotFoundError(f"{job_path} does not exist")
    sys.path.insert(0, str(REPO / "jobs"))
    try:
        spec = importlib.util.spec_from_file_location(f"job_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "jobs"))
    return module


def header(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def job_of_config(path: Path) -> str:
    """The job of the header's ``Run:`` line (or of its first ``python jobs/...`` command)."""
    text = header(path)
    run_lines = [line for line in text.splitlines() if "Run:" in line]
    match = JOB_IN_HEADER.search(run_lines[0]) if run_lines else None
    match = match or JOB_IN_HEADER.search(text)
    if not match:
        raise AssertionError(f"{path}: header must give the command that runs it (python jobs/<job>.py ...)")
    return match.group(1)


def config_class_of(job_path: str) -> type:
    return load_job_module(job_path).CONFIG_CLASS


def all_configs() -> list[Path]:
    return sorted(CONF.glob("*.yaml"))
