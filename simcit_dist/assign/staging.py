"""Where an assignment run writes before it publishes, and how dead runs' leftovers go away.

Everything a run writes (exchange scratch and the version's files) goes under
``<root>/_staging/<version>-<run id>/``; ``versions/<version>/`` only receives a complete
directory, moved there in one step just before its manifest and ``LATEST`` (see
:mod:`simcit_dist.assign.publish`). A killed run therefore leaves nothing under ``versions/``,
only a staging directory, which the next run removes: at once if it is a run of the same
version (same inputs) or of a version that is published by now (the run was killed after its
manifest), otherwise once its heartbeat is older than ``stale_after_s`` (runs touch it between
stages, so a live run of other inputs is never removed).
"""

from __future__ import annotations

import logging
import posixpath
import time
import uuid

import pyarrow.fs as pafs

from simcit_dist.sids.table import MANIFEST, version_dir
from simcit_dist.storage import Location, copy_objects, delete_dir, exists, list_files, write_text

log = logging.getLogger(__name__)

STAGING = "_staging"
LEGACY_SCRATCH = "_tmp"  # where runs before the staging prefix kept their exchange files
HEARTBEAT = "heartbeat"


def start_run(root: Location, version: str, stale_after_s: float) -> Location:
    """A fresh staging directory for this run of ``version``, after removing dead runs' leftovers."""
    clear_leftovers(root, version, stale_after_s)
    staging = root.child(STAGING, f"{version}-{uuid.uuid4().hex[:8]}")
    touch(staging)
    return staging


def touch(staging: Location) -> None:
    """Mark the run alive (between stages; a stage is bounded by the partition count)."""
    write_text(staging.child(HEARTBEAT), f"{time.time():.0f}\n")


def clear_leftovers(root: Location, version: str, stale_after_s: float) -> None:
    """Remove staging directories of earlier runs of ``version``, of published versions and stale
    ones of other versions, and the legacy ``_tmp`` scratch of runs before this layout."""
    for prefix in (STAGING, LEGACY_SCRATCH):
        base = root.child(prefix)
        for run in _run_dirs(base):
            name = posixpath.basename(run.path)
            run_version = name.rsplit("-", 1)[0]
            done = run_version == version or exists(version_dir(root, run_version).child(MANIFEST))
            age = _age_s(run.child(HEARTBEAT))
            if prefix == LEGACY_SCRATCH or done or age is None or age > stale_after_s:
                log.warning("removing leftovers of a dead assignment run: %s", run.uri)
                delete_dir(run)
        _delete_if_empty(base)


def finish_run(root: Location, staging: Location) -> None:
    """Remove this run's staging directory (and the staging prefix when it is empty)."""
    delete_dir(staging)
    _delete_if_empty(root.child(STAGING))


def _delete_if_empty(base: Location) -> None:
    if exists(base) and not list_files(base):
        delete_dir(base)


def move_into_place(staged: Location, target: Location) -> None:
    """Move the complete version directory ``staged`` to ``target`` (which must not exist).

    Locally one rename. S3 has no rename: each object is copied server-side, then the staged
    prefix is deleted; until the manifest is written after this, readers cannot see ``target``.
    """
    if not target.is_s3:
        target.fs.create_dir(posixpath.dirname(target.path), recursive=True)
        target.fs.move(staged.path, target.path)
        return
    copy_objects(staged, target)  # every file, hidden names included
    delete_dir(staged)


def _run_dirs(base: Location) -> list[Location]:
    if not exists(base):
        return []
    infos = base.fs.get_file_info(pafs.FileSelector(base.path, allow_not_found=True, recursive=False))
    return [base.child(posixpath.basename(i.path)) for i in infos if i.type == pafs.FileType.Directory]


def _age_s(heartbeat: Location) -> float | None:
    info = heartbeat.fs.get_file_info(heartbeat.path)
    if info.type == pafs.FileType.NotFound or info.mtime is None:
        return None
    return time.time() - info.mtime.timestamp()
