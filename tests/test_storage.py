from __future__ import annotations

import os

import pyarrow as pa
import pytest

from simcit_dist.data.parquet_io import read_file, read_table, write_table
from simcit_dist.storage import (
    StorageConfig,
    exists,
    list_files,
    read_json,
    replace_dir,
    resolve,
    s3_filesystem,
    staging_sibling,
    write_json,
)


def test_resolve_local_paths_are_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    loc = resolve("rel/dir")
    assert loc.path == str(tmp_path / "rel" / "dir") and not loc.is_s3
    assert resolve(f"file://{tmp_path}/x").path == f"{tmp_path}/x"
    with pytest.raises(ValueError, match="unsupported storage scheme 'gs'"):
        resolve("gs://bucket/x")
    with pytest.raises(ValueError, match="needs a bucket"):
        resolve("s3:///x")


def test_s3_settings_from_env(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    fs = s3_filesystem(StorageConfig())
    assert fs.region == "eu-west-1"
    loc = resolve("s3://bucket/a/b/")
    assert loc.path == "bucket/a/b" and loc.uri == "s3://bucket/a/b" and loc.is_s3
    with pytest.raises(ValueError, match="must be set together"):
        StorageConfig(s3_access_key_id="x")


def _roundtrip(root_uri: str, storage: StorageConfig | None) -> None:
    root = resolve(root_uri, storage)
    table = pa.table({"item_id": pa.array([3, 1, 2], pa.int64())})
    write_table(table, root.child("t", "part-0.parquet"))
    write_table(table, root.child("t", "part-1.parquet"))
    wide = table.append_column("x", pa.array([0.5, None, 2.0]))
    write_table(wide, root.child("w.parquet"))
    assert read_file(root.child("w.parquet")).equals(wide)
    assert read_file(root.child("w.parquet"), ["x"], use_threads=False).equals(wide.select(["x"]))
    write_json(root.child("t", "_meta.json"), {"a": 1})
    assert [f.uri.rsplit("/", 1)[1] for f in list_files(root.child("t"))] == ["part-0.parquet", "part-1.parquet"]
    assert read_table(root.child("t")).column("item_id").to_pylist() == [3, 1, 2, 3, 1, 2]
    assert read_json(root.child("t", "_meta.json")) == {"a": 1}
    # staged write then replace: the old content disappears only when the new one is complete
    target = root.child("out")
    write_json(target.child("v.json"), {"v": 1})
    staged = staging_sibling(target)
    write_json(staged.child("v.json"), {"v": 2})
    write_json(staged.child("_SUCCESS"), {"rows": 2})  # hidden names are part of an output (pair views' marker)
    write_json(staged.child("sub", ".heartbeat"), {})
    replace_dir(staged, target)
    assert read_json(target.child("v.json")) == {"v": 2}
    assert read_json(target.child("_SUCCESS")) == {"rows": 2} and exists(target.child("sub", ".heartbeat"))
    assert not exists(staged.child("v.json")) and not exists(staged.child("_SUCCESS"))


def test_local_roundtrip(tmp_path) -> None:
    _roundtrip(str(tmp_path), None)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")], "no staging leftovers"


@pytest.mark.s3
def test_s3_roundtrip(s3_bucket) -> None:
    uri, storage = s3_bucket
    _roundtrip(uri + "/prefix", storage)


@pytest.mark.s3
def test_ray_data_reads_s3_through_storage_layer(s3_bucket, ray_local) -> None:
    from simcit_dist.data.parquet_io import read_dataset

    uri, storage = s3_bucket
    root = resolve(uri + "/ds", storage)
    for i in range(3):
        write_table(pa.table({"item_id": pa.array(range(i * 10, i * 10 + 10), pa.int64())}),
                    root.child(f"part-{i}.parquet"))
    ids = sorted(read_dataset(uri + "/ds", storage).to_pandas()["item_id"].tolist())
    assert ids == list(range(30))


def test_reads_skip_the_per_read_footer_actor_pool(tmp_path, ray_local) -> None:
    # Ray 2.60's V2 Parquet reader lists files in ListFiles tasks that each start 32 FooterReader
    # actors; read_dataset builds V1 reads (no ListFiles) and leaves the caller's DataContext alone.
    import ray.data

    from simcit_dist.data.parquet_io import read_dataset

    write_table(pa.table({"item_id": pa.array(range(5), pa.int64())}), resolve(str(tmp_path / "t" / "a.parquet")))
    ctx = ray.data.DataContext.get_current()
    ctx.use_datasource_v2 = True
    ds = read_dataset(str(tmp_path / "t"))
    assert ctx.use_datasource_v2 is True
    ops, todo = [], [ds._logical_plan.dag]
    while todo:
        op = todo.pop()
        ops.append(op.name)
        todo.extend(op.input_dependencies)
    assert not [name for name in ops if "ListFiles" in name or "ParquetV2" in name], ops
    assert sorted(ds.to_pandas()["item_id"]) == list(range(5))
