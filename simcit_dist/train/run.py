"""Ray Train's ``RunConfig`` for a :class:`RunSection`, built the same way by both trainers."""

from __future__ import annotations

import re

import pyarrow.fs as pafs
from ray.train import CheckpointConfig, FailureConfig, RunConfig

from simcit_dist.storage import Location, StorageConfig, resolve
from simcit_dist.train.config import RunSection

STEP_CHECKPOINT = re.compile(r"^step_(\d+)$")  # the tokenizer's checkpoint_dir_name: step_<8 digits>


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


def checkpoint_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def unregistered_checkpoints(run: RunSection, storage: StorageConfig | None, restored_step: int) -> list[int]:
    """Steps of the ``step_*`` checkpoint directories of the run newer than the restored one.

    Ray Train restores the latest checkpoint of its run snapshot (``checkpoint_manager_snapshot.json``),
    which it rewrites only *after* a reported checkpoint has been uploaded. A job stopped in
    between leaves a directory that Ray never registered, never restores and later overwrites:
    it may be complete or half-uploaded, so it is only reported, never loaded."""
    run_dir = resolve(run.storage_path, storage).child(run.name)
    try:
        infos = run_dir.fs.get_file_info(pafs.FileSelector(run_dir.path, recursive=False, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []
    steps = []
    for info in infos:
        match = STEP_CHECKPOINT.match(info.base_name)
        if info.type == pafs.FileType.Directory and match and int(match.group(1)) > restored_step:
            steps.append(int(match.group(1)))
    return sorted(steps)
