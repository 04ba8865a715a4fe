"""jobs/convert.py and jobs/prepare_data.py end to end (in-process, on the session's local Ray)."""

from __future__ import annotations

import sys

import pytest

from simcit_dist.data.parquet_io import read_table
from simcit_dist.data.schemas import SchemaError
from simcit_dist.storage import read_json, resolve
from tests.jobs_registry import REPO, load_job_module


def _run(monkeypatch, job: str, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [job, *argv])
    load_job_module(job).main()


def test_convert_then_prepare_jobs_on_nyc(shared_data, tmp_path, ray_local, monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # the conf's input paths are relative to the checkout
    _run(monkeypatch, "jobs/convert.py", "--config", "conf/convert_nyc.yaml", f"output={tmp_path}/nyc",
         f"run_dir={tmp_path}/run", "foursquare.behaviour.cf_dim=8")
    assert read_json(resolve(f"{tmp_path}/nyc/summary.json"))["tables"]["catalog"]["output_rows"] == 5135
    _run(monkeypatch, "jobs/prepare_data.py", "--config", "conf/prepare.yaml", f"catalog={tmp_path}/nyc/catalog",
         f"pairs={tmp_path}/nyc/pairs", f"interactions={tmp_path}/nyc/interactions",
         f"output={tmp_path}/prepared", f"run_dir={tmp_path}/run", "modalities={emb_geo: 32, emb_cf: 8}")
    assert read_table(resolve(f"{tmp_path}/prepared/interactions")).num_rows == 147_938
    summary = read_json(resolve(f"{tmp_path}/run/prepare_summary.json"))
    assert summary["status"] == "ok" and summary["tables"]["catalog"]["missing_modality"]["emb_cf"] > 0

    # main() raises; run_main turns it into the job's last line (tests/jobs/test_job_failures.py)
    with pytest.raises(SchemaError, match=r"missing modality column 'emb_text'"):
        _run(monkeypatch, "jobs/prepare_data.py", "--config", "conf/prepare.yaml",
             f"catalog={tmp_path}/nyc/catalog", "pairs=null", "interactions=null", f"output={tmp_path}/prepared",
             f"run_dir={tmp_path}/run", "modalities={emb_text: 384}")
    assert read_table(resolve(f"{tmp_path}/prepared/interactions")).num_rows == 147_938  # untouched
