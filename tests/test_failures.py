"""Every failure becomes one line naming the file/URI and what was wrong (issue 27, item 1).

Real failures only: damaged files on disk and in the moto S3 server, a closed port, a listener
that accepts and never answers, and real Ray/Ray Train wrappers around them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from ray.train import ControllerError, WorkerGroupError

from simcit_dist.data.parquet_io import BadFileError, check_files, read_schema, read_table
from simcit_dist.failures import describe, is_input_error, unwrap
from simcit_dist.storage import StorageConfig, exists, resolve, write_bytes


def _damaged(folder: Path) -> dict[str, Path]:
    """A good file and the three damaged kinds users meet: empty, not Parquet, truncated."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "part-00000.parquet"
    pq.write_table(pa.table({"item_id": pa.array(range(100), pa.int64())}), good)
    data = good.read_bytes()
    files = {"good": good, "empty": folder / "part-00001.parquet", "junk": folder / "part-00002.parquet",
             "truncated": folder / "part-00003.parquet"}
    files["empty"].write_bytes(b"")
    files["junk"].write_text("item_id\n1\n2\n")  # a CSV saved under a .parquet name
    files["truncated"].write_bytes(data[: len(data) // 2])  # an upload cut off half way
    return files


@pytest.mark.parametrize(("kind", "meaning"), [
    ("empty", "empty file (0 bytes), expected Parquet"),
    ("junk", "not a Parquet file, or a truncated one"),
    ("truncated", "not a Parquet file, or a truncated one"),
])
def test_a_damaged_file_is_named_with_what_is_wrong(tmp_path: Path, kind: str, meaning: str) -> None:
    path = _damaged(tmp_path / "t")[kind]
    with pytest.raises(BadFileError) as err:
        read_table(resolve(str(path)))
    assert str(err.value).startswith(f"{path}: {meaning}")
    assert describe(err.value).startswith(f"BadFileError: {path}: {meaning}") and is_input_error(err.value)


def test_check_files_reads_every_footer_and_reports_the_first_bad_one(tmp_path: Path) -> None:
    files = _damaged(tmp_path / "t")
    with pytest.raises(BadFileError, match=r"part-00001.parquet: empty file .*\(3 of 4 files are unreadable"):
        check_files(resolve(str(tmp_path / "t")))
    for kind in ("empty", "junk", "truncated"):
        files[kind].unlink()
    assert [(f.uri, n) for f, n in check_files(resolve(str(tmp_path / "t")))] == [(str(files["good"]), 100)]


def test_a_damaged_object_in_s3_is_named_by_its_uri(s3_bucket: tuple[str, StorageConfig]) -> None:
    bucket, storage = s3_bucket
    write_bytes(resolve(f"{bucket}/t/part-00000.parquet", storage), b"PAR1 not really")
    with pytest.raises(BadFileError, match=rf"^{bucket}/t/part-00000.parquet: not a Parquet file"):
        check_files(resolve(f"{bucket}/t", storage))


def test_unreachable_store_says_so(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = StorageConfig(s3_endpoint=f"http://127.0.0.1:{port}", s3_access_key_id="a", s3_secret_access_key="b",
                            s3_timeout_s=2, s3_retries=1)
    with pytest.raises(OSError) as err:
        exists(resolve("s3://nobucket/x", storage))
    line = describe(err.value)
    assert "object store unreachable (connection refused)" in line and is_input_error(err.value)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung endpoint)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_store_that_never_answers_fails_after_the_configured_timeout(silent_listener: int) -> None:
    storage = StorageConfig(s3_endpoint=f"http://127.0.0.1:{silent_listener}", s3_access_key_id="a",
                            s3_secret_access_key="b", s3_timeout_s=1, s3_retries=1)
    with pytest.raises(OSError) as err:
        read_schema(resolve("s3://bucket/table", storage))
    assert "object store did not answer in time (storage.s3_timeout_s)" in describe(err.value)


def test_ray_and_ray_train_wrappers_are_looked_through(tmp_path: Path, ray_local: None) -> None:
    bad = _damaged(tmp_path / "t")["junk"]

    @ray.remote(max_retries=0)
    def read(path: str) -> int:
        return read_table(resolve(path)).num_rows

    with pytest.raises(Exception) as err:
        ray.get(read.remote(str(bad)))
    assert type(unwrap(err.value)) is BadFileError
    assert describe(err.value).startswith(f"BadFileError: {bad}: not a Parquet file")
    inner = BadFileError(f"{bad}: not a Parquet file")
    group = WorkerGroupError("rank 1 failed", {1: inner, 0: ValueError("rank 0: bad batch")})
    assert describe(group) == "ValueError: rank 0: bad batch"  # the lowest rank's error
    assert unwrap(ControllerError(group)) is group.worker_failures[0]
    assert not is_input_error(RuntimeError("a bug")) and describe(RuntimeError("")) == "RuntimeError: RuntimeError('')"


def test_long_and_multi_line_messages_become_one_short_line() -> None:
    line = describe(ValueError("first line\n" + "x" * 5000))
    assert line == "ValueError: first line"
    assert len(describe(ValueError("y" * 5000))) == 600
