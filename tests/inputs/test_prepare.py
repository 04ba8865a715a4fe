"""prepare_data: every row reason with exact counts, duplicate policy, unknown items, file-level errors,
and a failed run leaving the previous output in place."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from simcit_dist.data.parquet_io import read_table, write_table
from simcit_dist.data.rejects import RejectThresholdError
from simcit_dist.data.schemas import SchemaError, arrow_to_embeddings, embedding_type
from simcit_dist.inputs.config import PrepareJobConfig
from simcit_dist.inputs.prepare import prepare_data
from simcit_dist.storage import StorageConfig, list_files, read_json, resolve

NAN = float("nan")


def _catalog(ids: list[int | None], emb_a: list[list[float] | None], emb_b: list[list[float] | None]) -> pa.Table:
    """emb_a: fixed_size_list<float32>[4]; emb_b: variable list<float64> (converted and length-checked)."""
    return pa.table({"item_id": pa.array(ids, pa.int64()),
                     "emb_a": pa.array(emb_a, embedding_type(4)),
                     "emb_b": pa.array(emb_b, pa.list_(pa.float64())),
                     "title": pa.array([f"t{i}" for i in range(len(ids))])})


def _v(x: float, n: int = 4) -> list[float]:
    return [x + k for k in range(n)]


def _write_inputs(base: str, storage: StorageConfig | None = None) -> None:
    file0 = _catalog(
        ids=[1, None, 2, 3, 4, 5, 6, 1, 7, 8],
        emb_a=[_v(1), _v(0), [NAN, 1, 2, 3], [1, float("inf"), 0, 0], [0, 0, 0, 0], None, _v(6), _v(9), None, _v(8)],
        emb_b=[_v(1, 3), _v(0, 3), _v(2, 3), _v(3, 3), _v(4, 3), _v(5, 2), [0.0, 0.0, 0.0], _v(1, 3), None, _v(8, 3)],
    )
    # rows: 0 ok | 1 bad_id | 2 non_finite | 3 non_finite | 4 zero_vector(emb_a) | 5 wrong_dimension(emb_b)
    #       6 zero_vector(emb_b) | 7 duplicate of row 0 | 8 no_modality | 9 ok
    file1 = _catalog(ids=[9, 2, 1, 10], emb_a=[_v(9), _v(2), _v(1), None],
                     emb_b=[_v(9, 3), _v(2, 3), _v(1, 3), _v(10, 3)])
    # rows: 0 ok | 1 ok: id 2's first occurrence failed a row check, so this one is kept | 2 duplicate | 3 ok (emb_a null)
    write_table(file0, resolve(f"{base}/catalog/part-0.parquet", storage))
    write_table(file1, resolve(f"{base}/catalog/part-1.parquet", storage))
    pairs = pa.table({"item_a": pa.array([1, 1, 3, 2, 6, 1, 1, 100, 9], pa.int64()),
                      "item_b": pa.array([9, None, 3, 10, 7, 2, 2, 200, 10], pa.int64()),
                      "weight": pa.array([1.0, 1.0, 1.0, NAN, 2.0, -1.0, None, 1.0, 0.5], pa.float32())})
    # rows: 0 ok | 1 bad_id | 2 self_pair | 3 bad_weight | 4 unknown_item (6 zero, 7 no modality)
    #       5 bad_weight | 6 ok (null weight -> 1.0) | 7 unknown_item (both) | 8 ok
    write_table(pairs, resolve(f"{base}/pairs/part-0.parquet", storage))
    inter = pa.table({"user_id": pa.array([1, 1, None, 2, 2], pa.int64()),
                      "item_id": pa.array([1, 3, 9, 10, 9], pa.int32()),
                      "timestamp": pa.array([0, 1, 2, None, 4], pa.int64())})
    # rows: 0 ok | 1 unknown_item (3 was non_finite) | 2 bad_id | 3 null_value | 4 ok
    write_table(inter, resolve(f"{base}/interactions/part-0.parquet", storage))


def _config(base: str, storage: StorageConfig | None = None, **kw) -> PrepareJobConfig:
    args = dict(catalog=f"{base}/catalog", pairs=f"{base}/pairs", interactions=f"{base}/interactions",
                modalities={"emb_a": 4, "emb_b": 3}, output=f"{base}/prepared", run_dir=f"{base}/run", num_buckets=3,
                storage=storage or StorageConfig())
    return PrepareJobConfig(**(args | kw))


EXPECTED_REJECTS = {
    "catalog": {"bad_id": 1, "non_finite": 2, "zero_vector": 2, "wrong_dimension": 1, "no_modality": 1,
                "duplicate_item_id": 2},
    "pairs": {"bad_id": 1, "self_pair": 1, "bad_weight": 2, "unknown_item": 2},
    "interactions": {"unknown_item": 1, "bad_id": 1, "null_value": 1},
}


def _check_outputs(base: str, storage: StorageConfig | None = None) -> None:
    cat = read_table(resolve(f"{base}/prepared/catalog", storage))
    assert cat["item_id"].to_pylist() == [1, 8, 9, 2, 10]
    assert cat["title"].to_pylist() == ["t0", "t9", "t0", "t1", "t3"]
    for name, dim in (("emb_a", 4), ("emb_b", 3)):
        t = cat.schema.field(name).type
        assert pa.types.is_fixed_size_list(t) and t.list_size == dim and t.value_type == pa.float32()
    emb_a = arrow_to_embeddings(cat["emb_a"])
    np.testing.assert_array_equal(emb_a[:4], np.array([_v(1), _v(8), _v(9), _v(2)], np.float32))
    assert cat["emb_a"].null_count == 1 and np.isnan(emb_a[4]).all()  # item 10 lacks emb_a: kept
    np.testing.assert_array_equal(arrow_to_embeddings(cat["emb_b"]),
                                  np.array([_v(1, 3), _v(8, 3), _v(9, 3), _v(2, 3), _v(10, 3)], np.float32))
    pairs = read_table(resolve(f"{base}/prepared/pairs", storage))
    assert list(zip(pairs["item_a"].to_pylist(), pairs["item_b"].to_pylist(), pairs["weight"].to_pylist())) == [
        (1, 9, 1.0), (1, 2, 1.0), (9, 10, 0.5)]
    inter = read_table(resolve(f"{base}/prepared/interactions", storage))
    assert inter["item_id"].to_pylist() == [1, 9] and inter.schema.field("item_id").type == pa.int64()


def test_every_reason_with_exact_counts(tmp_path, ray_local) -> None:
    base = str(tmp_path)
    _write_inputs(base)
    report = prepare_data(_config(base, max_reject_fraction=1.0))
    assert {k: t.rejected for k, t in report.tables.items()} == EXPECTED_REJECTS
    assert {k: (t.input_rows, t.output_rows) for k, t in report.tables.items()} == {
        "catalog": (14, 5), "pairs": (9, 3), "interactions": (5, 2)}
    assert report.tables["catalog"].missing_modality == {"emb_a": 1, "emb_b": 0}
    _check_outputs(base)

    rejects = read_table(resolve(f"{base}/prepared/rejects"))
    got = sorted(zip(rejects["source_file"].to_pylist(), rejects["row"].to_pylist(), rejects["reason"].to_pylist()))
    f0, f1, p, i = (f"{base}/catalog/part-0.parquet", f"{base}/catalog/part-1.parquet",
                    f"{base}/pairs/part-0.parquet", f"{base}/interactions/part-0.parquet")
    assert got == sorted([
        (f0, 1, "bad_id"), (f0, 2, "non_finite"), (f0, 3, "non_finite"), (f0, 4, "zero_vector"),
        (f0, 5, "wrong_dimension"), (f0, 6, "zero_vector"), (f0, 7, "duplicate_item_id"), (f0, 8, "no_modality"),
        (f1, 2, "duplicate_item_id"),
        (p, 1, "bad_id"), (p, 2, "self_pair"), (p, 3, "bad_weight"), (p, 4, "unknown_item"), (p, 5, "bad_weight"),
        (p, 7, "unknown_item"),
        (i, 1, "unknown_item"), (i, 2, "bad_id"), (i, 3, "null_value")])
    detail = {(s, r): (c, d) for s, r, c, d in zip(rejects["source_file"].to_pylist(), rejects["row"].to_pylist(),
                                                   rejects["column"].to_pylist(), rejects["detail"].to_pylist())}
    assert detail[(f0, 5)] == ("emb_b", "emb_b has 2 values, expected 3")
    assert detail[(f0, 3)] == ("emb_a", "emb_a has 1 NaN/Inf values (after cast to float32)")
    assert detail[(f1, 2)] == ("item_id", f"item_id 1 already at {f0} row 0 (first valid occurrence is kept)")
    assert detail[(p, 7)] == ("item_a", "item_a=100, item_b=200 not in the validated catalog")
    summary = read_json(resolve(f"{base}/run/prepare_summary.json"))
    assert summary["status"] == "ok" and summary["tables"]["pairs"]["rejected"] == EXPECTED_REJECTS["pairs"]


def test_threshold_failure_keeps_previous_output(tmp_path, ray_local) -> None:
    base = str(tmp_path)
    _write_inputs(base)
    prepare_data(_config(base, max_reject_fraction=1.0))
    before = read_json(resolve(f"{base}/prepared/summary.json"))
    write_table(_catalog([1, 2], [_v(1), None], [_v(1, 3), None]), resolve(f"{base}/catalog/part-1.parquet"))
    with pytest.raises(RejectThresholdError) as exc:
        prepare_data(_config(base))  # default max_reject_fraction 1 %
    message = str(exc.value)
    assert "catalog: 10 of 12 rows rejected (83.33%) > max_reject_fraction 1.00%" in message
    assert f"previous output at {base}/prepared left unchanged" in message
    assert read_json(resolve(f"{base}/prepared/summary.json")) == before
    _check_outputs(base)
    failed = read_json(resolve(f"{base}/run/prepare_summary.json"))
    assert failed["status"] == "failed" and failed["tables"]["catalog"]["rejected"]["no_modality"] == 2
    assert read_table(resolve(f"{base}/run/rejects")).num_rows == failed["tables"]["catalog"]["rejected_rows"] + \
        failed["tables"]["pairs"]["rejected_rows"] + failed["tables"]["interactions"]["rejected_rows"]


def test_missing_column_is_a_file_level_error(tmp_path, ray_local) -> None:
    base = str(tmp_path)
    _write_inputs(base)
    write_table(pa.table({"item_id": pa.array([5], pa.int64()), "emb_a": pa.array([_v(5)], embedding_type(4))}),
                resolve(f"{base}/catalog/part-2.parquet"))
    with pytest.raises(SchemaError, match=r"part-2.parquet: missing modality column 'emb_b' \(list<float32>\[3\]\); "
                                          r"expected modalities \{'emb_a': 4, 'emb_b': 3\}"):
        prepare_data(_config(base))
    write_table(pa.table({"user_id": [1], "item_id": [1]}), resolve(f"{base}/interactions/part-0.parquet"))
    with pytest.raises(SchemaError, match=r"interactions/part-0.parquet: missing column 'timestamp' \(int64\)"):
        prepare_data(_config(base, catalog=f"{base}/catalog/part-0.parquet"))
    with pytest.raises(SchemaError, match=r"column 'emb_a' has dim 4, expected 5"):
        prepare_data(_config(base, catalog=f"{base}/catalog/part-0.parquet", pairs=None, interactions=None,
                             modalities={"emb_a": 5}))
    assert read_json(resolve(f"{base}/run/prepare_summary.json"))["status"] == "failed"


def test_modalities_are_inferred_when_not_given(tmp_path, ray_local) -> None:
    base = str(tmp_path)
    write_table(pa.table({"item_id": pa.array([3, 4], pa.int64()), "emb": pa.array([_v(1), _v(2)], embedding_type(4)),
                          "other": pa.array([[1.0], [2.0]], pa.list_(pa.float32()))}),
                resolve(f"{base}/catalog/a.parquet"))
    write_table(pa.table({"item_id": pa.array([], pa.int64()), "emb": pa.array([], embedding_type(4))}),
                resolve(f"{base}/catalog/b.parquet"))  # an empty file is fine and keeps its (empty) part
    report = prepare_data(PrepareJobConfig(catalog=f"{base}/catalog", output=f"{base}/prepared", run_dir=f"{base}/run"))
    assert report.tables["catalog"].output_rows == 2 and report.tables["catalog"].missing_modality == {"emb": 0}
    assert len(list_files(resolve(f"{base}/prepared/catalog"))) == 2 and report.tables["catalog"].files == 2
    # A variable-length float column is not a modality unless configured: not validated, so not passed on.
    assert read_table(resolve(f"{base}/prepared/catalog")).column_names == ["item_id", "emb"]
    assert report.tables["catalog"].notes == {"dropped_columns": "other"}
    assert read_table(resolve(f"{base}/prepared/rejects")).num_rows == 0


def test_two_datasets_with_default_run_dirs_keep_both_summaries(tmp_path, ray_local, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # default run dirs are relative: runs/prepare/<output name>-<hash>
    for name, n in (("beauty", 2), ("scientific", 3)):
        table = pa.table({"item_id": pa.array(range(1, n + 1), pa.int64()),
                          "emb": pa.array([_v(i) for i in range(1, n + 1)], embedding_type(4))})
        write_table(table, resolve(f"{tmp_path}/{name}/catalog/a.parquet"))
        prepare_data(PrepareJobConfig(catalog=f"{tmp_path}/{name}/catalog", output=f"{tmp_path}/{name}_prepared"))
    summaries = sorted((tmp_path / "runs" / "prepare").glob("*/prepare_summary.json"))
    assert [p.parent.name.rsplit("-", 1)[0] for p in summaries] == ["beauty_prepared", "scientific_prepared"]
    assert [read_json(resolve(str(p)))["tables"]["catalog"]["output_rows"] for p in summaries] == [2, 3]


@pytest.mark.s3
def test_prepare_on_s3(s3_bucket, ray_local) -> None:
    base, storage = s3_bucket
    _write_inputs(base, storage)
    report = prepare_data(_config(base, storage, max_reject_fraction=1.0))
    assert {k: t.rejected for k, t in report.tables.items()} == EXPECTED_REJECTS
    _check_outputs(base, storage)
