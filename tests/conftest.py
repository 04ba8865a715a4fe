"""Shared fixtures: one local Ray and one moto S3 server per session, shared data paths."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from simcit_dist.storage import StorageConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Keep test runs quiet and independent of the user's environment.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("TQDM_DISABLE", "1")


RAY_CPUS = 4  # logical CPUs on a 2-core machine: 2 train workers plus Ray Data read tasks must fit
log = logging.getLogger(__name__)


def _start_ray() -> None:
    import ray

    # address="local": never join another Ray instance on the machine.
    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}})


def _ours() -> bool:
    """The running Ray is the fixture's (not one that Ray Data auto-started with other resources)."""
    import ray

    return ray.is_initialized() and ray.cluster_resources().get("CPU") == RAY_CPUS


def _cpus_free(timeout_s: float) -> bool:
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0.0) >= RAY_CPUS:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="session")
def _ray_session() -> Iterator[None]:
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="module")
def ray_local(_ray_session: None) -> Iterator[None]:
    """One local Ray for the session (start-up ~4 s, paid once), started by the first module that
    needs it. After each module every CPU must be free again; if a module left actors or tasks
    holding some, the next module gets a fresh Ray rather than a starved one (a fork of this
    process once left the SID-assignment encoder actors of later modules pending forever)."""
    import ray

    if not _ours():
        if ray.is_initialized():
            ray.shutdown()
        _start_ray()
    yield
    if not _cpus_free(timeout_s=15):
        log.warning("Ray CPUs still held after this module (%s of %d free): restarting Ray for the next",
                    ray.available_resources().get("CPU", 0.0), RAY_CPUS)
        ray.shutdown()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 HTTP endpoint (moto's ThreadedMotoServer) on 127.0.0.1; yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: str) -> tuple[str, StorageConfig]:
    """A fresh bucket on the moto server: (``s3://bucket``, StorageConfig to reach it)."""
    import boto3

    bucket = f"simcit-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    cfg = StorageConfig(s3_endpoint=s3_server, s3_region="us-east-1", s3_access_key_id="testing",
                        s3_secret_access_key="testing")
    return f"s3://{bucket}", cfg


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository; tests that need it skip when it is absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path} (expected ../shared/data beside the repo)")
    return path
