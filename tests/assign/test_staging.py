"""Assignment stages, then publishes (issue 27, item 2): a run killed at any stage leaves nothing
under versions/ and LATEST where it was; the next successful run leaves no scratch behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from simcit_dist.assign import job as assign_job
from simcit_dist.assign import staging
from simcit_dist.assign.job import run_assignment
from simcit_dist.assign.publish import latest_version, published_versions
from simcit_dist.storage import resolve, write_text
from tests.assign.test_assign_job import _cfg, _day2, _sids
from tests.helpers import rqkmeans_artifact, small_catalog, write_catalog


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, and the run's own clean-up is disabled beside it."""


def test_stale_and_same_version_leftovers_are_removed(tmp_path: Path) -> None:
    root = resolve(str(tmp_path))
    live = staging.start_run(root, "v00002-aaa", stale_after_s=3600)
    dead_other = root.child("_staging", "v00003-bbb-12345678")
    staging.touch(dead_other)
    old = time.time() - 7200
    os.utime(tmp_path / "_staging" / "v00003-bbb-12345678" / "heartbeat", (old, old))
    write_text(root.child("_tmp", "v00001-ccc-deadbeef", "a", "x.exch"), "legacy scratch")
    fresh_other = staging.start_run(root, "v00004-ddd", stale_after_s=3600)
    left = sorted(p.name for p in (tmp_path / "_staging").iterdir())
    assert left == sorted([live.path.rsplit("/", 1)[1], fresh_other.path.rsplit("/", 1)[1]])
    assert not (tmp_path / "_tmp").exists()
    again = staging.start_run(root, "v00002-aaa", stale_after_s=3600)  # a re-run of v00002: the old one is dead
    assert not (tmp_path / "_staging" / live.path.rsplit("/", 1)[1]).exists() and again.path != live.path
    for run in (again, fresh_other):
        staging.finish_run(root, run)
    assert not (tmp_path / "_staging").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["_encode_into_exchange", "_stage_a", "_stage_b", "move_into_place", "publish"])
def test_a_run_killed_at_each_stage_publishes_nothing_and_the_rerun_cleans_up(
        tmp_path: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    day1 = small_catalog(1500)
    write_catalog(day1, str(tmp_path / "catalog"))
    rqkmeans_artifact(day1, str(tmp_path / "tok"))
    first = run_assignment(_cfg(str(tmp_path), num_partitions=2))
    before = _sids(str(tmp_path / "sids"))
    day2, _ = _day2(day1)
    write_catalog(day2, str(tmp_path / "catalog2"))
    nightly = _cfg(str(tmp_path), catalog=str(tmp_path / "catalog2"), previous="LATEST", num_partitions=2)

    with monkeypatch.context() as m:
        target = staging if stage == "move_into_place" else assign_job.pub if stage == "publish" else assign_job
        real = getattr(target, stage)

        def die(*args: object, **kwargs: object) -> object:
            if stage in ("move_into_place", "publish"):
                real(*args, **kwargs)  # killed right after this step did its work
            raise Killed(stage)

        m.setattr(target, stage, die)
        m.setattr(assign_job.pub, "clear_incomplete", lambda *a: None)  # a killed process cleans nothing
        m.setattr(staging, "finish_run", lambda *a: None)
        with pytest.raises(Killed):
            run_assignment(nightly)

    root = resolve(str(tmp_path / "sids"))
    if stage == "publish":  # the manifest was written: the version is complete, LATEST may lag behind
        assert len(published_versions(root)) == 2
    else:
        assert latest_version(root) == first.version and published_versions(root) == [first.version]
        assert _sids(str(tmp_path / "sids")) == before
        partial = [p for p in (tmp_path / "sids" / "versions").iterdir() if p.name != first.version]
        assert partial == [] or stage == "move_into_place", partial  # only the move itself can leave one

    second = run_assignment(nightly)
    assert latest_version(root) == second.version != first.version
    assert len(_sids(str(tmp_path / "sids"))) == day2.num_rows
    assert sorted(p.name for p in (tmp_path / "sids").iterdir()) == ["LATEST", "versions"]  # no scratch left
    # killed after its manifest, the nightly run had published: the re-run is the next night against it
    versions = published_versions(root)
    assert versions[0] == first.version and versions[-1] == second.version
    assert len(versions) == (3 if stage == "publish" else 2)
