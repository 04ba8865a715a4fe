"""Ray Train's ``RunConfig`` for a :class:`RunSection`, built the same way by both trainers."""

from __future__ import annotations

from ray.train import CheckpointConfig, FailureConfig, RunConfig

from simcit_dist.storage import Location, StorageConfig, resolve
from simcit_dist.train.config import RunSection


def ray_run_config(run: RunSection, storage: StorageConfig | None,
                   checkpoint: CheckpointConfig | None = None) -> tuple[RunConfig, Location]:
    """(RunConfig, the storage root): checkpoints land in ``<storage_path>/<name>/`` on local disk or
    S3, through the same pyarrow filesystem every reader and writer uses."""
    root = resolve(run.storage_path, storage)
    config = RunConfig(
        name=run.name,
        storage_path=root.path if root.is_s3 else root.uri,
        storage_filesystem=root.fs if root.is_s3 else None,
        checkpoint_config=checkpoint or CheckpointConfig(num_to_keep=run.num_to_keep),
        failure_config=FailureConfig(max_failures=run.max_failures),
    )
    return config, root
