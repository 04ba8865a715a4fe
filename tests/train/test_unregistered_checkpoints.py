"""A checkpoint directory Ray Train wrote but never registered (the job stopped in between) is
found and named at resume, on local disk and on S3; the restored one and older ones are not."""

from __future__ import annotations

import logging

import pytest

from simcit_dist.storage import StorageConfig, resolve, write_bytes
from simcit_dist.tokenizer_training.config import TokenizerJobConfig, TokenizerRunSection
from simcit_dist.tokenizer_training.worker import _report_unregistered
from simcit_dist.train.config import RunSection
from simcit_dist.train.run import checkpoint_dir_name, unregistered_checkpoints


def _plant(root: str, storage: StorageConfig | None, names: list[str]) -> None:
    for name in names:
        write_bytes(resolve(f"{root}/ray/run-a/{name}/state.pt", storage), b"x")
    write_bytes(resolve(f"{root}/ray/run-a/checkpoint_manager_snapshot.json", storage), b"{}")


def _check(root: str, storage: StorageConfig | None) -> None:
    _plant(root, storage, [checkpoint_dir_name(s) for s in (60, 70, 80, 90)] + ["step_junk"])
    run = RunSection(storage_path=f"{root}/ray", name="run-a")
    assert unregistered_checkpoints(run, storage, 70) == [80, 90]
    assert unregistered_checkpoints(run, storage, 90) == []
    assert unregistered_checkpoints(run, storage, 0) == [60, 70, 80, 90]
    assert unregistered_checkpoints(RunSection(storage_path=f"{root}/ray", name="absent"), storage, 0) == []


def test_newer_checkpoint_dirs_than_the_restored_one_are_found_locally(tmp_path) -> None:
    _check(str(tmp_path), None)


@pytest.mark.s3
def test_newer_checkpoint_dirs_than_the_restored_one_are_found_on_s3(s3_bucket) -> None:
    uri, storage = s3_bucket
    _check(f"{uri}/unregistered", storage)


def test_resume_names_them_in_the_log(tmp_path, caplog) -> None:
    _plant(str(tmp_path), None, [checkpoint_dir_name(70), checkpoint_dir_name(80)])
    cfg = TokenizerJobConfig(run=TokenizerRunSection(storage_path=str(tmp_path / "ray"), name="run-a"))
    with caplog.at_level(logging.WARNING):
        _report_unregistered(cfg, 70)
    assert ("step_00000080 lie(s) in run 'run-a' but Ray Train never registered them" in caplog.text
            and "resumes from step 70 and repeats steps 71-80" in caplog.text), caplog.text
    caplog.clear()
    _report_unregistered(cfg, 80)
    assert caplog.text == ""
