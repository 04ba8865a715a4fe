"""Bring your own embeddings: .npy / .pt / Parquet files joined to a catalog as a new modality, exactly,
with every bad row rejected by file, row and reason; the joined catalog passes prepare_data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from simcit_dist.data.parquet_io import read_table, write_table
from simcit_dist.data.rejects import RejectThresholdError
from simcit_dist.data.schemas import SchemaError, arrow_to_embeddings, embeddings_to_arrow
from simcit_dist.inputs.config import ConvertJobConfig, EmbeddingsConfig, PrepareJobConfig
from simcit_dist.inputs.converters import convert
from simcit_dist.inputs.prepare import prepare_data
from simcit_dist.storage import StorageConfig, read_json, resolve
from tests.helpers import small_catalog, write_catalog

DIM = 6
N_CATALOG = 400


def _inputs(tmp_path: Path) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """A catalog, and embeddings for 300 of its items plus bad rows at known positions."""
    catalog = small_catalog(N_CATALOG)
    write_catalog(catalog, str(tmp_path / "catalog"), files=2)
    cat_ids = catalog.column("item_id").to_numpy()
    rng = np.random.default_rng(1)
    ids = rng.permutation(cat_ids)[:300].copy()
    emb = rng.standard_normal((300, DIM)).astype(np.float32)
    return catalog, ids, emb


def _with_bad_rows(ids: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Append rows that must be rejected; returns (ids, emb, [(row, reason)])."""
    bad_ids = np.array([ids[3], 10**12, ids[5], ids[7]])
    bad = np.ones((4, DIM), np.float32)
    bad[2, 1] = np.nan
    bad[3] = 0.0
    rows = len(ids)
    expected = [(rows, "duplicate_item_id"), (rows + 1, "unknown_item"), (rows + 2, "non_finite"),
                (rows + 3, "zero_vector")]
    return np.concatenate([ids, bad_ids]), np.concatenate([emb, bad]), expected


def _convert(tmp_path: Path, storage: StorageConfig | None = None, max_reject_fraction: float = 0.05,
             **embeddings):
    cfg = ConvertJobConfig(source="embeddings", output=str(tmp_path / "out"), run_dir=str(tmp_path / "run"),
                           max_reject_fraction=max_reject_fraction,
                           embeddings=EmbeddingsConfig(catalog=str(tmp_path / "catalog"), column="emb_own",
                                                       rows_per_task=64, num_partitions=3, **embeddings),
                           storage=storage or StorageConfig())
    return convert(cfg)


def _check_joined(tmp_path: Path, catalog: pa.Table, ids: np.ndarray, emb: np.ndarray) -> None:
    """The output is the catalog (all its columns, every item once) plus emb_own = the given rows."""
    got = read_table(resolve(str(tmp_path / "out" / "catalog"))).sort_by("item_id")
    want = catalog.sort_by("item_id")
    assert got.num_rows == want.num_rows
    for name in want.column_names:
        assert got.column(name).equals(want.column(name)), name
    by_id = dict(zip(ids.tolist(), emb))
    own = got.column("emb_own")
    values = arrow_to_embeddings(own)
    for r, item in enumerate(got.column("item_id").to_pylist()):
        if item in by_id:
            assert np.array_equal(values[r], by_id[item])
        else:
            assert not own[r].is_valid
    assert own.null_count == N_CATALOG - len(by_id)


def _rejects(tmp_path: Path) -> list[tuple[str, int, str]]:
    t = read_table(resolve(str(tmp_path / "out" / "rejects")))
    return sorted(zip(t["source_file"].to_pylist(), t["row"].to_pylist(), t["reason"].to_pylist()))


def test_npy_with_ids_joins_exactly_and_rejects_bad_rows(tmp_path, ray_local) -> None:
    catalog, ids, emb = _inputs(tmp_path)
    all_ids, all_emb, bad = _with_bad_rows(ids, emb)
    np.save(tmp_path / "emb.npy", all_emb)
    np.save(tmp_path / "ids.npy", all_ids)
    report = _convert(tmp_path, input=str(tmp_path / "emb.npy"), ids=str(tmp_path / "ids.npy"))
    _check_joined(tmp_path, catalog, ids, emb)  # the first row of a duplicated id is kept
    uri = resolve(str(tmp_path / "emb.npy")).uri
    assert _rejects(tmp_path) == sorted((uri, row, reason) for row, reason in bad)
    summary = read_json(resolve(str(tmp_path / "out" / "summary.json")))
    assert summary["tables"]["embeddings"]["input_rows"] == 304
    assert summary["tables"]["embeddings"]["output_rows"] == 300
    assert summary["tables"]["catalog"]["missing_modality"] == {"emb_own": N_CATALOG - 300}
    assert report.status == "ok"
    # the joined catalog is a valid input: prepare keeps every item and sees both modalities
    out = prepare_data(PrepareJobConfig(catalog=str(tmp_path / "out" / "catalog"), output=str(tmp_path / "prep"),
                                        run_dir=str(tmp_path / "prep_run")))
    assert out.tables["catalog"].output_rows == N_CATALOG


def test_pt_dict_and_parquet_join_the_same(tmp_path, ray_local) -> None:
    catalog, ids, emb = _inputs(tmp_path)
    torch.save({"ids": torch.from_numpy(ids), "embeddings": torch.from_numpy(emb)}, tmp_path / "emb.pt")
    _convert(tmp_path, input=str(tmp_path / "emb.pt"))
    _check_joined(tmp_path, catalog, ids, emb)

    parquet = tmp_path / "store"
    half = len(ids) // 2
    for i, part in enumerate((slice(0, half), slice(half, None))):  # a feature-store export: variable lists
        write_table(pa.table({"sku": pa.array(ids[part]),
                              "vector": pa.array([list(map(float, row)) for row in emb[part]], pa.list_(pa.float32()))}),
                    resolve(str(parquet / f"part-{i}.parquet")))
    with pytest.raises(SchemaError, match="variable-length list: set embeddings.dim"):
        _convert(tmp_path, input=str(parquet), id_column="sku", embedding_column="vector")
    _convert(tmp_path, input=str(parquet), id_column="sku", embedding_column="vector", dim=DIM)
    _check_joined(tmp_path, catalog, ids, emb)


def test_parquet_rejects_name_file_and_row(tmp_path, ray_local) -> None:
    catalog, ids, emb = _inputs(tmp_path)
    all_ids, all_emb, bad = _with_bad_rows(ids, emb)
    write_table(pa.table({"item_id": all_ids, "embedding": embeddings_to_arrow(all_emb)}),
                resolve(str(tmp_path / "emb.parquet")))
    _convert(tmp_path, input=str(tmp_path / "emb.parquet"))
    uri = resolve(str(tmp_path / "emb.parquet")).uri
    assert _rejects(tmp_path) == sorted((uri, row, reason) for row, reason in bad)
    _check_joined(tmp_path, catalog, ids, emb)


def test_bad_files_fail_by_name_and_publish_nothing(tmp_path, ray_local) -> None:
    catalog, ids, emb = _inputs(tmp_path)
    np.save(tmp_path / "emb.npy", emb)
    np.save(tmp_path / "short_ids.npy", ids[:-1])
    with pytest.raises(SchemaError, match="299 ids for the 300 rows"):
        _convert(tmp_path, input=str(tmp_path / "emb.npy"), ids=str(tmp_path / "short_ids.npy"))
    with pytest.raises(SchemaError, match="needs embeddings.ids"):
        _convert(tmp_path, input=str(tmp_path / "emb.npy"))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "emb.npy").read_bytes()[:-10])
    np.save(tmp_path / "ids.npy", ids)
    with pytest.raises(SchemaError, match="cut.npy: truncated"):
        _convert(tmp_path, input=str(tmp_path / "cut.npy"), ids=str(tmp_path / "ids.npy"))
    with pytest.raises(SchemaError, match="already has a column 'emb_a'"):
        convert(ConvertJobConfig(source="embeddings", output=str(tmp_path / "out"), run_dir=str(tmp_path / "run"),
                                 embeddings=EmbeddingsConfig(catalog=str(tmp_path / "catalog"), column="emb_a",
                                                             input=str(tmp_path / "emb.npy"),
                                                             ids=str(tmp_path / "ids.npy"))))
    # most ids unknown: above the reject threshold, nothing is published
    np.save(tmp_path / "wrong_ids.npy", ids + 10**9)
    with pytest.raises(RejectThresholdError, match="embeddings: 300 of 300 rows rejected"):
        _convert(tmp_path, input=str(tmp_path / "emb.npy"), ids=str(tmp_path / "wrong_ids.npy"))
    assert not (tmp_path / "out").exists()
    assert catalog.num_rows == N_CATALOG
