"""The storage exchange: one file per writer, each partition read back exactly, on local disk and S3."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from simcit_dist.data.exchange import (
    SUFFIX,
    TAIL_READ_BYTES,
    ExchangeSink,
    exchange_files,
    read_partition,
    write_partitions,
)
from simcit_dist.data.fingerprint import partition_of
from simcit_dist.storage import Location, list_files, resolve

P = 7


def _rows(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"item_id": rng.choice(10_000_000, n, replace=False).astype(np.int64),
                     "c1": rng.integers(0, 256, n).astype(np.int32),
                     "vec": pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(size=n * 4).astype(np.float32)), 4)})


def _reference(tables: list[pa.Table], partition: int) -> list[int]:
    """Plain reference: the ids of every input row hashed to ``partition``, sorted."""
    ids = np.concatenate([t.column("item_id").to_numpy() for t in tables])
    return sorted(ids[partition_of([ids], P) == partition].tolist())


def _check_roundtrip(exchange: Location) -> None:
    first, second = _rows(500, 0), _rows(3, 1)  # 3 rows leave most partitions empty in the second file
    assert write_partitions(first, exchange, ["item_id"], P, "cur-w0") == 500
    assert write_partitions(second, exchange, ["item_id"], P, "prev-w1") == 3
    assert write_partitions(first.slice(0, 0), exchange, ["item_id"], P, "cur-empty") == 0
    assert [f.path.rsplit("/", 1)[-1] for f in list_files(exchange)] == ["cur-w0" + SUFFIX, "prev-w1" + SUFFIX]
    by_id = {int(i): k for k, i in enumerate(first.column("item_id").to_numpy())}
    seen = 0
    for p in range(P):
        both = read_partition(exchange, p)
        expected = _reference([first, second], p)
        got = sorted(both.column("item_id").to_pylist()) if both is not None else []
        assert got == expected, p
        cur = read_partition(exchange, p, "cur", columns=["item_id", "vec"])
        assert cur is not None and cur.column_names == ["item_id", "vec"]
        for item, vec in zip(cur.column("item_id").to_pylist(), cur.column("vec").to_pylist()):
            assert vec == first.column("vec")[by_id[item]].as_py()  # rows travel whole
        seen += cur.num_rows
    assert seen == 500
    empty = [p for p in range(P) if not _reference([second], p)]
    assert empty and all(read_partition(exchange, p, "prev") is None for p in empty)


def test_roundtrip_local(tmp_path) -> None:
    _check_roundtrip(resolve(str(tmp_path / "ex")))


def test_roundtrip_s3(s3_bucket) -> None:
    bucket, storage = s3_bucket
    _check_roundtrip(resolve(f"{bucket}/ex", storage))


def test_index_larger_than_the_tail_read(tmp_path) -> None:
    """A partition count whose index does not fit the reader's first ranged read: read in a second one."""
    many = TAIL_READ_BYTES // 8 + 10
    exchange = resolve(str(tmp_path / "ex"))
    rows = _rows(40, 5)
    write_partitions(rows, exchange, ["item_id"], many, "cur-big")
    ids = rows.column("item_id").to_numpy()
    part = partition_of([ids], many)
    for p in [*np.unique(part)[:5].tolist(), int(part.max()), many - 1]:
        got = read_partition(exchange, p)
        assert sorted(got.column("item_id").to_pylist() if got is not None else []) == sorted(ids[part == p].tolist())


def test_damaged_file_is_named(tmp_path) -> None:
    exchange = resolve(str(tmp_path / "ex"))
    write_partitions(_rows(100, 2), exchange, ["item_id"], P, "cur-a")
    path = tmp_path / "ex" / ("cur-a" + SUFFIX)
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # a truncated upload: the trailer is gone
    with pytest.raises(ValueError, match=r"cur-a\.exch: not a complete exchange file"):
        read_partition(exchange, 0)
    path.write_bytes(data[:100] + data[150:])  # segments shorter than the index says
    with pytest.raises(ValueError, match="exchange index does not match the file"):
        read_partition(exchange, 0)
    path.write_bytes(data)
    with pytest.raises(ValueError, match=f"partition {P} asked of an exchange of {P}"):
        read_partition(exchange, P)


def test_failed_writer_leaves_no_file(tmp_path) -> None:
    exchange = resolve(str(tmp_path / "ex"))
    with pytest.raises(KeyError):  # fails after the output stream is open
        write_partitions(_rows(10, 4), exchange, ["no_such_column"], P, "cur-x")
    assert [p.name for p in (tmp_path / "ex").iterdir()] == []  # not even the hidden in-flight file


def test_sink_writes_one_file_per_task(ray_local, tmp_path) -> None:
    import ray.data

    table = _rows(2_000, 3)
    exchange = resolve(str(tmp_path / "ex"))
    sink = ExchangeSink(exchange, ["item_id"], P, "cur", min_rows_per_write=500)
    ray.data.from_arrow(table).repartition(4).write_datasink(sink)
    files = exchange_files(exchange, "cur")
    assert sink.rows_written == 2_000 and 1 <= len(files) <= 4
    got = sorted(i for p in range(P) for i in read_partition(exchange, p, "cur").column("item_id").to_pylist())
    assert got == sorted(table.column("item_id").to_pylist())
    with pytest.raises(ValueError, match="must not contain '-'"):
        ExchangeSink(exchange, ["item_id"], P, "a-b")
