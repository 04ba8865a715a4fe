"""`ray job submit` of the jobs, exactly as cluster/README.md submits them to the KubeRay cluster
(`ray job submit --address <dashboard> --working-dir . -- python jobs/<job>.py --config conf/...`),
against a local Ray head this module starts and stops: generate -> train tokenizer -> assign SIDs ->
nightly re-tokenization, demo configs with tiny overrides, outputs in tmp_path. (The recommender's
submission is left out to keep this under ~3 minutes on 2 cores: it alone took 200 s here. Its RayJob
entrypoint is checked offline in test_manifests.py, and the job itself by tests/recommender.)

The head runs in its own --temp-dir and ports with token authentication (RAY_AUTH_MODE=token, a
fresh RAY_AUTH_TOKEN), like the RayCluster (authOptions.mode: token). It is stopped by terminating
the `ray start --block` process this test started and its descendants, by pid; not with `ray stop`,
which kills every Ray process of the user (the session's `ray_local` cluster and other runs on the
machine included).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.cluster.conftest import REPO

RAY = str(Path(sys.executable).with_name("ray"))
# The README's command minus the cluster address (RAY_ADDRESS in the subprocess env instead).
SUBMIT = [RAY, "job", "submit", "--working-dir", "."]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for_dashboard(url: str, token: str, head: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    request = urllib.request.Request(f"{url}/api/version", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"`ray start --head` exited with {head.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"Ray dashboard did not answer at {url} within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def stop_head(head: subprocess.Popen) -> None:
    """SIGTERM `ray start --block` and everything it started (all by pid), SIGKILL what is left."""
    try:
        procs = [psutil.Process(head.pid), *psutil.Process(head.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    head.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[dict[str, str]]:
    """Environment for `ray job submit` against a fresh local head (4 logical CPUs, token auth)."""
    temp_dir = tempfile.mkdtemp(prefix="rayk8s-", dir="/tmp")  # short: raylet socket paths are <= 107 chars
    gcs, dashboard, client, agent = free_ports(4)
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0",
                "TQDM_DISABLE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"})
    log = Path(temp_dir) / "ray-start.log"
    with open(log, "w") as log_file:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dashboard}",
             "--dashboard-host=127.0.0.1", f"--ray-client-server-port={client}",
             f"--dashboard-agent-listen-port={agent}", "--num-cpus=4", "--disable-usage-stats",
             f"--temp-dir={temp_dir}"],
            env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{dashboard}"
        wait_for_dashboard(url, token, head, log)
        yield {**env, "RAY_ADDRESS": url}
    finally:
        stop_head(head)


def submit(env: dict[str, str], *command: str, timeout: float = 240) -> str:
    start = time.monotonic()
    result = subprocess.run([*SUBMIT, "--", "python", *command], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    output = result.stdout + result.stderr
    print(f"{command[0]} {command[2]}: {time.monotonic() - start:.0f} s")  # shown with -s / on failure
    assert result.returncode == 0 and "succeeded" in output, f"{' '.join(command)}:\n{output[-6000:]}"
    return output


@pytest.mark.slow
def test_jobs_run_through_ray_job_submit(ray_head: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path  # absolute: the entrypoints run in Ray's copy of the working dir
    submit(ray_head, "jobs/generate_synthetic.py", "--config", "conf/synthetic.yaml", f"output={out}/data",
           "data.num_items=2000", "data.num_users=300", "num_tasks=2")
    # data.pairs=null: the pair join alone takes minutes of Ray Data worker start-up on 2 cores
    submit(ray_head, "jobs/train_tokenizer.py", "--config", "conf/tokenizer.yaml", f"data.catalog={out}/data/catalog",
           "data.pairs=null", "data.shuffle_buffer=512", "train.batch_size=256", "train.max_steps=4",
           "train.warmup_steps=1", "train.log_every=2", "train.checkpoint_every=4", f"run.storage_path={out}/ray",
           "run.name=tok", f"run.run_dir={out}/reports/tokenizer")
    assert (out / "ray" / "tok" / "tokenizer").is_dir()
    sids = [f"catalog={out}/data/catalog", f"tokenizer={out}/ray/tok/tokenizer", f"output={out}/sids",
            "num_partitions=2", "actors=1", "hit_rate_sample=0"]
    submit(ray_head, "jobs/assign_sids.py", "--config", "conf/assign.yaml", *sids, f"run_dir={out}/reports/assign")
    first = (out / "sids" / "LATEST").read_text().strip()
    submit(ray_head, "jobs/assign_sids.py", "--config", "conf/retokenize_nightly.yaml", *sids,
           f"run_dir={out}/reports/nightly")
    latest = (out / "sids" / "LATEST").read_text().strip()
    manifest = json.loads((out / "sids" / "versions" / latest / "manifest.json").read_text())
    assert latest != first and manifest["previous"] == first  # the nightly run re-tokenized against LATEST
