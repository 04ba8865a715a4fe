"""Jobs run as a user runs them (a subprocess): a damaged file or a dead object store ends the
job in seconds with a non-zero exit and ONE clear last line, and nothing is published."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import rqkmeans_artifact, small_catalog, write_catalog

REPO = Path(__file__).resolve().parents[2]


def _run_job(script: str, *args: str, timeout: int = 240, num_cpus: int = 2) -> tuple[int, list[str], float]:
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(REPO)}
    start = time.time()
    out = subprocess.run([sys.executable, f"jobs/{script}", *args, "--num-cpus", str(num_cpus)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=timeout)
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    return out.returncode, lines, time.time() - start


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_prepare_names_a_truncated_catalog_file_and_publishes_nothing(tmp_path: Path) -> None:
    write_catalog(small_catalog(300), str(tmp_path / "catalog"), files=3)
    bad = tmp_path / "catalog" / "part-001.parquet"
    bad.write_bytes(bad.read_bytes()[:200])
    rc, lines, _ = _run_job("prepare_data.py", "--config", "conf/prepare.yaml", f"catalog={tmp_path}/catalog",
                            "pairs=null", "interactions=null", f"output={tmp_path}/out", f"run_dir={tmp_path}/run")
    assert rc == 1
    assert lines[-1].startswith(f"prepare_data failed: BadFileError: {bad}: not a Parquet file, or a truncated one")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_assign_fails_fast_on_a_bad_file_and_on_a_dead_store(tmp_path: Path) -> None:
    table = small_catalog(600)
    write_catalog(table, str(tmp_path / "catalog"), files=3)
    rqkmeans_artifact(table, str(tmp_path / "tok"))
    (tmp_path / "catalog" / "part-002.parquet").write_bytes(b"")
    rc, lines, seconds = _run_job("assign_sids.py", "--config", "conf/assign.yaml", f"catalog={tmp_path}/catalog",
                                  f"tokenizer={tmp_path}/tok", f"output={tmp_path}/sids", f"run_dir={tmp_path}/run")
    assert rc == 1 and lines[-1] == (f"assign_sids failed: BadFileError: {tmp_path}/catalog/part-002.parquet: "
                                     "empty file (0 bytes), expected Parquet (Parquet file size is 0 bytes)")
    assert seconds < 60  # the footers are read before the encode actors start (was 85 s)
    assert not list((tmp_path / "sids").glob("versions/*/manifest.json"))

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    rc, lines, _ = _run_job("assign_sids.py", "--config", "conf/assign.yaml", "catalog=s3://nobucket/catalog",
                            f"tokenizer={tmp_path}/tok", f"output={tmp_path}/sids", f"run_dir={tmp_path}/run",
                            f"storage.s3_endpoint={endpoint}", "storage.s3_access_key_id=a",
                            "storage.s3_secret_access_key=b", "storage.s3_timeout_s=2", "storage.s3_retries=1")
    assert rc == 1 and lines[-1].startswith("assign_sids failed: OSError: s3://nobucket/catalog: object store "
                                            "unreachable (connection refused)"), lines[-3:]


@pytest.mark.slow
def test_a_job_beside_another_ray_instance_uses_only_its_own(tmp_path: Path, ray_local: None) -> None:
    """The test session's Ray is running; the job starts its own, and none of its components
    (Ray Train's placement-group cleaner included) stops at "multiple active Ray instances".
    Its Ray has 2 CPUs, as many as the training workers: the pool fits its claim and runs."""
    write_catalog(small_catalog(600), str(tmp_path / "catalog"), files=2)
    rc, lines, _ = _run_job("train_tokenizer.py", "--config", "conf/tokenizer.yaml", f"data.catalog={tmp_path}/catalog",
                            "data.pairs=null", "train.batch_size=128", "train.epochs=1", "train.checkpoint_every=2",
                            "tokenizer.simcit.hidden_dims=[32]", "tokenizer.simcit.codebook_size=8",
                            f"run.storage_path={tmp_path}/ray", f"run.run_dir={tmp_path}/run", timeout=400,
                            num_cpus=2)
    text = "\n".join(lines)
    assert rc == 0, lines[-5:]
    # 2 training workers on a 2-CPU Ray: they claim half a CPU each, so Ray Data's readers keep one
    # (with a whole CPU each the job waited forever for its data)
    assert "tokenizer training workers: 2 x 1 CPU would leave this 2-CPU local Ray" in text, text[-2000:]
    assert "multiple active Ray instances" not in text and "ConnectionError" not in text
