"""SID assignment and nightly re-tokenization on local Ray, local disk and moto S3."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pyarrow as pa
import pytest

from simcit_dist.assign.config import AssignJobConfig
from simcit_dist.assign.job import FAIL_ENV, run_assignment
from simcit_dist.assign.publish import latest_version
from simcit_dist.assign.resolve import DuplicateItemError
from simcit_dist.data.parquet_io import read_table
from simcit_dist.sids.table import SIDTableError, read_sid_table
from simcit_dist.storage import StorageConfig, list_files, resolve, write_text
from tests.helpers import perturb, rqkmeans_artifact, small_catalog, write_catalog

N = 3000


def _cfg(tmp_uri: str, storage: StorageConfig | None = None, **kw) -> AssignJobConfig:
    base = dict(catalog=f"{tmp_uri}/catalog", tokenizer=f"{tmp_uri}/tok", output=f"{tmp_uri}/sids",
                num_partitions=4, actors=1, encode_batch_size=700, hit_rate_sample=500, max_suffix=1000,
                run_dir="/tmp/unused", storage=storage or StorageConfig())
    base.update(kw)
    return AssignJobConfig(**base)


def _day2(day1: pa.Table) -> tuple[pa.Table, dict[str, set[int]]]:
    """Remove 200, change 300 (embeddings), add 250 new items."""
    rng = np.random.default_rng(5)
    ids = day1.column("item_id").to_numpy()
    removed = rng.choice(len(ids), 200, replace=False)
    keep = np.setdiff1d(np.arange(len(ids)), removed)
    table = day1.take(pa.array(keep))
    changed_rows = rng.choice(table.num_rows, 300, replace=False)
    table = perturb(table, changed_rows)
    added = small_catalog(250, seed=9, offset=900_000)
    info = {"removed": set(ids[removed].tolist()),
            "changed": set(table.column("item_id").to_numpy()[changed_rows].tolist()),
            "added": set(added.column("item_id").to_pylist())}
    return pa.concat_tables([table, added]), info


def _sids(root: str, storage=None, version=None) -> dict[int, str]:
    table, _ = read_sid_table(root, storage, version)
    return dict(zip(table.column("item_id").to_pylist(), table.column("sid").to_pylist()))


def _digest_files(loc) -> dict[str, str]:
    out = {}
    for f in list_files(loc, suffix=".parquet"):
        with f.fs.open_input_stream(f.path) as h:
            out[f.path.rsplit("/", 2)[-2] + "/" + f.path.rsplit("/", 1)[-1]] = hashlib.sha256(h.read()).hexdigest()
    return out


@pytest.mark.slow
def test_full_then_nightly_on_local_disk(tmp_path, ray_local) -> None:
    day1 = small_catalog(N)
    write_catalog(day1, str(tmp_path / "catalog"))
    rqkmeans_artifact(day1, str(tmp_path / "tok"))
    first = run_assignment(_cfg(str(tmp_path)))
    table, manifest = read_sid_table(str(tmp_path / "sids"))
    assert table.num_rows == N and len(set(table.column("sid").to_pylist())) == N
    assert manifest.items == N and manifest.diff["added"] == N and manifest.seq == 1 and manifest.previous is None
    assert 0 < manifest.metrics["collision_rate"] <= 1 and manifest.metrics["hit_rate@10_p1"] > 0.5
    # byte-identical whatever the actors, batch sizes and input files (same partition count)
    write_catalog(day1, str(tmp_path / "other" / "catalog"), files=1)
    rqkmeans_artifact(day1, str(tmp_path / "other" / "tok"))
    other = run_assignment(_cfg(str(tmp_path / "other"), actors=2, encode_batch_size=333))
    assert _digest_files(resolve(first.version_uri)) == _digest_files(resolve(other.version_uri))
    # idempotent: the same inputs publish nothing new
    again = run_assignment(_cfg(str(tmp_path)))
    assert again.already_published and again.version == first.version

    # day 2: nightly re-tokenization against LATEST
    day2, info = _day2(day1)
    write_catalog(day2, str(tmp_path / "catalog2"))
    nightly = run_assignment(_cfg(str(tmp_path), catalog=str(tmp_path / "catalog2"), previous="LATEST"))
    assert latest_version(resolve(str(tmp_path / "sids"))) == nightly.version != first.version
    diff = nightly.manifest.diff
    assert (diff["added"], diff["removed"], diff["changed"]) == (250, 200, 300)
    assert diff["unchanged"] == N - 200 - 300
    old, new = _sids(str(tmp_path / "sids"), version=first.version), _sids(str(tmp_path / "sids"))
    assert set(new) == (set(old) - info["removed"]) | info["added"]
    for item in set(new) & set(old) - info["changed"]:
        assert new[item] == old[item]
    assert len(set(new.values())) == len(new)
    moved = {i for i in info["changed"] if new[i] != old[i]}
    assert diff["changed"] - diff["changed_kept_sid"] == len(moved)
    retired = read_table(resolve(nightly.version_uri).child("retired"))
    assert retired.num_rows == 200 + len(moved)
    fresh = {new[i] for i in info["added"] | moved}
    assert not fresh & {old[i] for i in old}, "a new SID re-used a live or retired SID of yesterday"


@pytest.mark.slow
@pytest.mark.s3
def test_s3_failed_run_leaves_latest_and_rerun_publishes(s3_bucket, ray_local, monkeypatch) -> None:
    uri, storage = s3_bucket
    day1 = small_catalog(N)
    write_catalog(day1, f"{uri}/catalog", storage)
    rqkmeans_artifact(day1, f"{uri}/tok", storage)
    first = run_assignment(_cfg(uri, storage))
    before = _sids(f"{uri}/sids", storage)
    day2, _ = _day2(day1)
    write_catalog(day2, f"{uri}/catalog2", storage)
    cfg = _cfg(uri, storage, catalog=f"{uri}/catalog2", previous="LATEST")
    monkeypatch.setenv(FAIL_ENV, "2")
    with pytest.raises(RuntimeError, match="injected failure"):
        run_assignment(cfg)
    root = resolve(f"{uri}/sids", storage)
    assert latest_version(root) == first.version
    assert _sids(f"{uri}/sids", storage) == before  # the published version still reads back intact
    assert not list_files(root.child("_staging")), "staged versions and exchange files are cleaned up"
    monkeypatch.delenv(FAIL_ENV)
    second = run_assignment(cfg)
    assert latest_version(root) == second.version != first.version
    assert len(_sids(f"{uri}/sids", storage)) == day2.num_rows


@pytest.mark.slow
def test_bad_inputs_and_failures_publish_nothing(tmp_path, ray_local, monkeypatch) -> None:
    day1 = small_catalog(N)
    write_catalog(day1, str(tmp_path / "catalog"))
    rqkmeans_artifact(day1, str(tmp_path / "tok"))
    first = run_assignment(_cfg(str(tmp_path)))
    root = resolve(str(tmp_path / "sids"))
    # a run that dies after writing some partitions on local disk: LATEST and the old version stand
    before = _sids(str(tmp_path / "sids"))
    day2, _ = _day2(day1)
    write_catalog(day2, str(tmp_path / "catalog2"))
    monkeypatch.setenv(FAIL_ENV, "1")
    with pytest.raises(RuntimeError, match="injected failure"):
        run_assignment(_cfg(str(tmp_path), catalog=str(tmp_path / "catalog2"), previous="LATEST"))
    monkeypatch.delenv(FAIL_ENV)
    assert latest_version(root) == first.version and _sids(str(tmp_path / "sids")) == before
    assert not (tmp_path / "sids" / "_staging").exists()
    time.sleep(1.0)  # a partition task still running after the failure would write its file by now
    stray = [p for p in (tmp_path / "sids" / "versions").rglob("*.parquet") if first.version not in p.parts]
    assert not stray, f"files of the failed version written after its clean-up: {stray}"
    # a catalog whose dims do not match the tokenizer
    wrong = small_catalog(100).rename_columns(["item_id", "emb_b", "emb_a"])
    write_catalog(wrong, str(tmp_path / "wrong"), files=1)
    with pytest.raises(ValueError, match=r"column 'emb_a' has dim 12, expected 8"):
        run_assignment(_cfg(str(tmp_path), catalog=str(tmp_path / "wrong")))
    # encoder actors the cluster cannot place (a GPU on this CPU-only Ray): a clear error, not a hang
    with pytest.raises(RuntimeError, match=r"encoder actors \(1.0 CPU, 1.0 GPU each\) did not start within"):
        run_assignment(_cfg(str(tmp_path), catalog=str(tmp_path / "catalog2"), gpus_per_actor=1.0,
                            actor_start_timeout_s=5))
    # duplicate item ids
    dup = pa.concat_tables([day1, day1.slice(0, 7)])
    write_catalog(dup, str(tmp_path / "dup"))
    with pytest.raises(DuplicateItemError, match="7 rows repeat an item_id"):
        run_assignment(_cfg(str(tmp_path), catalog=str(tmp_path / "dup")))
    # a previous version that does not exist, or whose manifest is corrupt
    with pytest.raises(SIDTableError, match="version 'v09999-nope' does not exist"):
        run_assignment(_cfg(str(tmp_path), previous="v09999-nope"))
    write_text(root.child("versions", first.version, "manifest.json"), "{not json")
    with pytest.raises(SIDTableError, match="corrupt manifest"):
        run_assignment(_cfg(str(tmp_path), previous=first.version))
    assert latest_version(root) == first.version
    leftovers = [d.name for d in (tmp_path / "sids" / "versions").iterdir() if d.name != first.version]
    assert all(not (tmp_path / "sids" / "versions" / d / "manifest.json").exists() for d in leftovers)


@pytest.mark.slow
def test_capacity_mode_reduces_suffixes(tmp_path, ray_local) -> None:
    day1 = small_catalog(N)
    write_catalog(day1, str(tmp_path / "catalog"))
    rqkmeans_artifact(day1, str(tmp_path / "tok"), codebook_size=16)
    run_assignment(_cfg(str(tmp_path), output=str(tmp_path / "plain")))
    capped = run_assignment(_cfg(str(tmp_path), output=str(tmp_path / "capped"), collision="capacity", capacity=2,
                                 capacity_candidates=8))
    moved = capped.manifest.counts["reassigned_by_capacity"]
    assert moved > 0
    over_cap = {}
    for name in ("plain", "capped"):
        table, _ = read_sid_table(str(tmp_path / name))
        assert len(set(table.column("sid").to_pylist())) == N
        over_cap[name] = int((table.column("suffix").to_numpy() >= 2).sum())
    # every moved item left an over-full code for a free one
    assert over_cap["capped"] == over_cap["plain"] - moved
