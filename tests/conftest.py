"""Shared fixtures: one local Ray per test module, one moto S3 server per session, shared data paths."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A fresh local Ray per test module (start-up ~5 s). One instance for the whole session let
    state from earlier modules leak into later ones: in CI, after the recommender tests, Ray Data's
    encoder actors of the SID-assignment tests stayed pending forever although alive."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # 4 logical CPUs on a 2-core machine: 2 train workers plus Ray Data read tasks must fit.
    # address="local": never join another Ray instance on the machine.
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}})
    yield
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
