"""AL-GR converters: exact round trips of each format, and exact reject reasons/counts for malformed input."""

from __future__ import annotations

import base64
import csv
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from simcit_dist.data import base62
from simcit_dist.data.parquet_io import read_table
from simcit_dist.data.rejects import RejectThresholdError
from simcit_dist.data.schemas import SchemaError, arrow_to_embeddings
from simcit_dist.inputs.config import AlgrConfig, ConvertJobConfig, PrepareJobConfig
from simcit_dist.inputs.converters import convert
from simcit_dist.inputs.prepare import prepare_data
from simcit_dist.sids.table import resolve_version
from simcit_dist.storage import StorageConfig, exists, read_json, resolve
from tests.fixtures.algr_fixtures import (
    feature_b64,
    item_emb_csv_rows,
    sequence_row,
    write_lines,
    write_npz,
)

DIM = 8


def _convert(base: str, storage: StorageConfig | None = None, max_reject_fraction: float = 0.01, **algr):
    cfg = ConvertJobConfig(source="algr", output=f"{base}/out", run_dir=f"{base}/run",
                           max_reject_fraction=max_reject_fraction, algr=AlgrConfig(dim=DIM, **algr),
                           storage=storage or StorageConfig())
    return convert(cfg)


def _catalog(base: str, storage: StorageConfig | None = None) -> pa.Table:
    return read_table(resolve(f"{base}/out/catalog", storage)).sort_by("item_id")


def _rejects(base: str, storage: StorageConfig | None = None, where: str = "out") -> list[tuple[str, int, str]]:
    t = read_table(resolve(f"{base}/{where}/rejects", storage))
    return sorted(zip(t["source_file"].to_pylist(), t["row"].to_pylist(), t["reason"].to_pylist()))


def _bits(matrix: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(matrix, dtype=np.float32).view(np.int32)


def _known_items(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.unique(np.concatenate([[0, 61, 62, 2**63 - 1], rng.integers(0, 2**63 - 1, n)]))
    emb = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    emb[0] = [-0.0, 1e-40, 3.4e38, -1.5, 1, 2, 3, 4]  # signed zero, a denormal, near float32 max survive bit-exact
    return ids, emb


# --- Item-EMB CSV ---------------------------------------------------------------------------------------


def _csv_round_trip(base: str, storage: StorageConfig | None) -> None:
    ids, emb = _known_items(300)
    write_lines(resolve(f"{base}/item_emb.csv", storage), "base62_string,feature", item_emb_csv_rows(ids, emb))
    report = _convert(base, storage, input=f"{base}/item_emb.csv", range_bytes=4096)
    assert report.tables["catalog"].input_rows == len(ids) and report.tables["catalog"].output_rows == len(ids)
    cat = _catalog(base, storage)
    np.testing.assert_array_equal(cat["item_id"].to_numpy(), ids)
    np.testing.assert_array_equal(_bits(arrow_to_embeddings(cat["emb"])), _bits(emb))
    assert cat["item_key"].to_pylist() == base62.encode_array(ids).to_pylist()
    emb_type = cat.schema.field("emb").type
    assert pa.types.is_fixed_size_list(emb_type) and emb_type.list_size == DIM and emb_type.value_type == pa.float32()


def test_item_emb_csv_round_trip_local(tmp_path, ray_local) -> None:
    _csv_round_trip(str(tmp_path), None)


@pytest.mark.s3
def test_item_emb_csv_convert_and_prepare_on_s3(s3_bucket, ray_local) -> None:
    base, storage = s3_bucket
    _csv_round_trip(base, storage)
    prep = PrepareJobConfig(catalog=f"{base}/out/catalog", modalities={"emb": DIM}, output=f"{base}/prepared",
                            run_dir=f"{base}/prep_run", num_buckets=4, storage=storage)
    report = prepare_data(prep)
    assert report.tables["catalog"].output_rows == report.tables["catalog"].input_rows == 304
    prepared = read_table(resolve(f"{base}/prepared/catalog", storage)).sort_by("item_id")
    assert prepared["item_id"].to_pylist() == _catalog(base, storage)["item_id"].to_pylist()
    np.testing.assert_array_equal(_bits(arrow_to_embeddings(prepared["emb"])), _bits(_known_items(300)[1]))
    summary = read_json(resolve(f"{base}/prepared/summary.json", storage))
    assert summary["status"] == "ok" and summary["config"]["storage"]["s3_secret_access_key"] == "<redacted>"
    assert read_json(resolve(f"{base}/prep_run/prepare_summary.json", storage))["tables"]["catalog"]["output_rows"] == 304


def test_item_emb_csv_malformed_rows_and_prepare_checks(tmp_path, ray_local) -> None:
    good = np.arange(1, DIM + 1, dtype=np.float32)
    f = feature_b64(good)
    lines = [
        f"Ab,{f}",  # 0 ok
        "Ac",  # 1 malformed_row (one field)
        f"A-b,{f}",  # 2 bad_id (character outside the alphabet)
        f"0Ad,{f}",  # 3 bad_id (leading zero: would collide with "Ad")
        f"AzL8n0Y58m8,{f}",  # 4 id_overflow (2**63)
        "Ae,!!!!" + f[4:],  # 5 bad_base64 (characters)
        f"Af,{f[:-1]}",  # 6 bad_base64 (padding)
        f"Ag,{base64.b64encode(good[:-1].tobytes()).decode()}",  # 7 wrong_byte_length (28 bytes)
        f"Ah,{f}",  # 8 ok
        f"Ai,{feature_b64(np.full(DIM, np.nan, np.float32))}",  # 9 passes convert, non_finite in prepare
        f"Aj,{feature_b64(np.zeros(DIM, np.float32))}",  # 10 passes convert, zero_vector in prepare
        f"Ab,{feature_b64(good * 2)}",  # 11 passes convert, duplicate_item_id in prepare
        f"Ak,{f},extra",  # 12 malformed_row (three fields)
        f'"Al","{f}"',  # 13 ok: quoted fields
    ]
    src = tmp_path / "item_emb.csv"
    write_lines(resolve(str(src)), "base62_string,feature", lines, newline="\r\n")
    with pytest.raises(RejectThresholdError, match=r"catalog: 8 of 14 rows rejected"):
        _convert(str(tmp_path), input=str(src))
    assert not exists(resolve(str(tmp_path / "out")))
    assert read_json(resolve(str(tmp_path / "run" / "convert_summary.json")))["status"] == "failed"

    report = _convert(str(tmp_path), max_reject_fraction=1.0, input=str(src), range_bytes=97)
    assert report.tables["catalog"].rejected == {"malformed_row": 2, "bad_id": 2, "id_overflow": 1,
                                                 "bad_base64": 2, "wrong_byte_length": 1}
    assert _rejects(str(tmp_path)) == sorted([
        (str(src), 1, "malformed_row"), (str(src), 2, "bad_id"), (str(src), 3, "bad_id"),
        (str(src), 4, "id_overflow"), (str(src), 5, "bad_base64"), (str(src), 6, "bad_base64"),
        (str(src), 7, "wrong_byte_length"), (str(src), 12, "malformed_row")])
    rejects = read_table(resolve(str(tmp_path / "out" / "rejects")))
    detail = dict(zip(rejects["row"].to_pylist(), rejects["detail"].to_pylist()))
    assert "28 bytes, expected 32 (8 float32)" in detail[7] and "'0Ad'" in detail[3]
    assert _catalog(str(tmp_path))["item_key"].to_pylist() == ["Ab", "Ab", "Ah", "Ai", "Aj", "Al"]

    prep = PrepareJobConfig(catalog=str(tmp_path / "out" / "catalog"), modalities={"emb": DIM},
                            output=str(tmp_path / "prepared"), run_dir=str(tmp_path / "prep_run"),
                            max_reject_fraction=1.0, num_buckets=3)
    report = prepare_data(prep)
    assert report.tables["catalog"].rejected == {"non_finite": 1, "zero_vector": 1, "duplicate_item_id": 1}
    cat = read_table(resolve(str(tmp_path / "prepared" / "catalog")))
    assert cat["item_key"].to_pylist() == ["Ab", "Ah", "Al"]
    np.testing.assert_array_equal(arrow_to_embeddings(cat["emb"])[0], good)  # the first "Ab" is kept


def test_item_emb_csv_header_is_checked(tmp_path, ray_local) -> None:
    write_lines(resolve(str(tmp_path / "x.csv")), "id,feature", ["Ab,AAAA"])
    with pytest.raises(SchemaError, match=r"x.csv: missing column\(s\) \['base62_string'\]"):
        _convert(str(tmp_path), input=str(tmp_path / "x.csv"))


# --- npz ------------------------------------------------------------------------------------------------


def _contrastive_round_trip(base: str, storage: StorageConfig | None, compressed: bool) -> None:
    ids, emb = _known_items(60, seed=1)
    rng = np.random.default_rng(2)
    rows = rng.permutation(len(ids))  # item i lives in embeds row rows[i]
    embeds = np.empty_like(emb)
    embeds[rows] = emb
    keys = base62.encode_array(ids).to_pylist()
    pairs = rng.integers(0, len(ids), size=(100, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    write_npz(resolve(f"{base}/c.npz", storage), {"itemEncID": dict(zip(keys, rows.tolist())), "pairs": pairs,
                                                   "embeds": embeds}, compressed=compressed)
    report = _convert(base, storage, format="contrastive_npz", input=f"{base}/c.npz", allow_pickle=True,
                      rows_per_task=16, chunk_rows=7)
    assert {k: (t.input_rows, t.output_rows) for k, t in report.tables.items()} == {
        "item_index": (len(ids), len(ids)), "catalog": (len(ids), len(ids)), "pairs": (len(pairs), len(pairs))}
    assert report.tables["catalog"].files == 1 and report.tables["catalog"].notes["id_kind"] == "base62"
    cat = _catalog(base, storage)
    np.testing.assert_array_equal(cat["item_id"].to_numpy(), ids)
    np.testing.assert_array_equal(_bits(arrow_to_embeddings(cat["emb"])), _bits(emb))
    assert cat["item_key"].to_pylist() == keys
    row_to_id = np.empty(len(ids), np.int64)
    row_to_id[rows] = ids
    got = read_table(resolve(f"{base}/out/pairs", storage))  # part names sort by first row: input order
    np.testing.assert_array_equal(got["item_a"].to_numpy(), row_to_id[pairs[:, 0]])
    np.testing.assert_array_equal(got["item_b"].to_numpy(), row_to_id[pairs[:, 1]])
    assert set(got["weight"].to_pylist()) == {1.0}


@pytest.mark.parametrize("compressed", [False, True])
def test_contrastive_npz_round_trip(tmp_path, ray_local, compressed: bool) -> None:
    _contrastive_round_trip(str(tmp_path), None, compressed)


@pytest.mark.s3
def test_contrastive_npz_round_trip_on_s3(s3_bucket, ray_local) -> None:
    """Members are read with ranged reads through pyarrow's S3 file (zip directory, then row ranges)."""
    _contrastive_round_trip(*s3_bucket, compressed=False)


def test_contrastive_npz_malformed(tmp_path, ray_local) -> None:
    embeds = np.arange(10 * DIM, dtype=np.float32).reshape(10, DIM)
    mapping = {"A": 0, "B": 1, "C": 2, "D": 3, "E": 4, "F": 5,
               "0G": 6,  # bad_id -> row 6 has no id
               "AzL8n0Y58m8": 7,  # id_overflow -> row 7 has no id
               "H": 10,  # bad_row_index (out of range)
               "I": 1,  # bad_row_index (row 1 already belongs to "B")
               }  # rows 8 and 9: no entry -> unmapped_row
    pairs = np.array([[0, 1], [2, 3], [0, 11], [-1, 2], [0, 6], [8, 9], [4, 5]])
    write_npz(resolve(str(tmp_path / "c.npz")), {"itemEncID": mapping, "pairs": pairs, "embeds": embeds})
    with pytest.raises(SchemaError, match="pickled Python object"):
        _convert(str(tmp_path), format="contrastive_npz", input=str(tmp_path / "c.npz"))
    report = _convert(str(tmp_path), max_reject_fraction=1.0, format="contrastive_npz",
                      input=str(tmp_path / "c.npz"), allow_pickle=True)
    assert report.tables["item_index"].rejected == {"bad_id": 1, "id_overflow": 1, "bad_row_index": 2}
    assert report.tables["catalog"].rejected == {"unmapped_row": 4}
    assert report.tables["pairs"].rejected == {"bad_row_index": 2, "unknown_item": 2}
    src = str(tmp_path / "c.npz")
    assert _rejects(str(tmp_path)) == sorted(
        [(f"{src}::itemEncID", 6, "bad_id"), (f"{src}::itemEncID", 7, "id_overflow"),
         (f"{src}::itemEncID", 8, "bad_row_index"), (f"{src}::itemEncID", 9, "bad_row_index")]
        + [(f"{src}::embeds", r, "unmapped_row") for r in (6, 7, 8, 9)]
        + [(f"{src}::pairs", 2, "bad_row_index"), (f"{src}::pairs", 3, "bad_row_index"),
           (f"{src}::pairs", 4, "unknown_item"), (f"{src}::pairs", 5, "unknown_item")])
    cat = _catalog(str(tmp_path))
    assert cat["item_key"].to_pylist() == list("ABCDEF")
    np.testing.assert_array_equal(arrow_to_embeddings(cat["emb"]), embeds[:6])
    got = read_table(resolve(str(tmp_path / "out" / "pairs")))
    assert list(zip(got["item_a"].to_pylist(), got["item_b"].to_pylist())) == [(10, 11), (12, 13), (14, 15)]


@pytest.mark.parametrize("kind", ["int", "str"])
def test_reconstruct_npz_round_trip_and_bad_ids(tmp_path, ray_local, kind: str) -> None:
    ids, emb = _known_items(40, seed=3)
    raw = ids if kind == "int" else np.array(base62.encode_array(ids).to_pylist())
    write_npz(resolve(str(tmp_path / "r.npz")), {"ids": raw, "embeds": emb})
    report = _convert(str(tmp_path), format="reconstruct_npz", input=str(tmp_path / "r.npz"), rows_per_task=10)
    assert report.tables["catalog"].output_rows == len(ids) and report.tables["catalog"].notes["id_kind"] == (
        "int" if kind == "int" else "base62")
    cat = _catalog(str(tmp_path))
    np.testing.assert_array_equal(cat["item_id"].to_numpy(), ids)
    np.testing.assert_array_equal(_bits(arrow_to_embeddings(cat["emb"])), _bits(emb))
    assert cat["item_key"].null_count == (len(ids) if kind == "int" else 0)
    if kind == "str":
        bad = raw.astype("<U12")
        bad[[3, 5]] = ["0bad", "has space"]
        write_npz(resolve(str(tmp_path / "r.npz")), {"ids": bad, "embeds": emb})
        report = _convert(str(tmp_path), max_reject_fraction=1.0, format="reconstruct_npz",
                          input=str(tmp_path / "r.npz"))
        assert report.tables["catalog"].rejected == {"bad_id": 2}
        assert _rejects(str(tmp_path)) == [(f"{tmp_path}/r.npz::ids", 3, "bad_id"), (f"{tmp_path}/r.npz::ids", 5, "bad_id")]
        assert report.tables["catalog"].output_rows == len(ids) - 2


def test_npz_dimension_and_members_are_file_errors(tmp_path, ray_local) -> None:
    write_npz(resolve(str(tmp_path / "d.npz")), {"ids": np.arange(3), "embeds": np.ones((3, DIM + 1), np.float32)})
    with pytest.raises(SchemaError, match=r"d.npz::embeds: has dim 9, expected 8 \(algr.dim\)"):
        _convert(str(tmp_path), format="reconstruct_npz", input=str(tmp_path / "d.npz"))
    write_npz(resolve(str(tmp_path / "m.npz")), {"embeds": np.ones((3, DIM), np.float32)})
    with pytest.raises(SchemaError, match=r"m.npz: missing member 'pairs'"):
        _convert(str(tmp_path), format="contrastive_npz", input=str(tmp_path / "m.npz"))


# --- sequences ------------------------------------------------------------------------------------------


def _reference_parse(path: Path) -> list[tuple[str, list[int], list[int]]]:
    """Independent reading of the sample: csv module + one regex per field."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return [(r[0], [int(t) for t in re.findall(r"C(\d+)", r[2])], [int(t) for t in re.findall(r"C(\d+)", r[3])])
            for r in rows[1:]]


def test_real_algr_sample_parses(shared_data, tmp_path, ray_local) -> None:
    path = shared_data / "algr_sample" / "train_data.csv"
    expected = _reference_parse(path)
    report = _convert(str(tmp_path), format="sequences", input=str(path), range_bytes=2500)
    assert report.tables["sequences"].input_rows == 10 and report.tables["sequences"].rejected == {}
    seq = read_table(resolve(str(tmp_path / "out" / "sequences"))).sort_by([("user_row", "ascending"),
                                                                             ("position", "ascending")])
    tokens = np.concatenate([h + a for _, h, a in expected]).reshape(-1, 3) - np.array([0, 8192, 16384])
    np.testing.assert_array_equal(np.stack([seq[c].to_numpy() for c in ("c1", "c2", "c3")], axis=1), tokens)
    lengths = [(len(h) + len(a)) // 3 for _, h, a in expected]
    assert seq["user_row"].to_pylist() == list(np.repeat(np.arange(10), lengths))
    assert seq["sample_id"].to_pylist() == list(np.repeat([s for s, _, _ in expected], lengths))
    assert int(seq["is_target"].to_numpy().sum()) == sum(len(a) // 3 for _, _, a in expected) == 10
    assert seq.num_rows == 818
    # The external SID table has each distinct SID once, and the item ids decode back to the codes.
    vdir, manifest = resolve_version(resolve(str(tmp_path / "out" / "sids")))
    sids = read_table(vdir.child("sids")).sort_by("item_id")
    assert manifest.num_levels == 3 and manifest.codebook_size == 8192 and manifest.max_suffix == 0
    assert sids.num_rows == len({tuple(t) for t in tokens.tolist()}) == manifest.items
    assert manifest.source["item_id"].startswith("sum(c_l * codebook_size")
    ids = sids["item_id"].to_numpy()
    codes = np.stack([sids[c].to_numpy().astype(np.int64) for c in ("c1", "c2", "c3")], axis=1)
    np.testing.assert_array_equal(ids, codes @ np.array([8192**2, 8192, 1]))
    assert sids["sid"][0].as_py() == "-".join(map(str, codes[0])) + "/0"
    inter = read_table(resolve(str(tmp_path / "out" / "interactions")))
    assert inter.num_rows == 818 and set(inter["item_id"].to_pylist()) == set(ids.tolist())


def test_sequence_rows_malformed(tmp_path, ray_local) -> None:
    hist = np.array([[1, 2, 3], [4, 5, 6]])
    ans = np.array([[7, 8, 9]])
    good = sequence_row("s0", hist, ans)
    lines = [
        good,  # 0
        "s1\tonly three\tfields",  # 1 malformed_row
        "s2\tsys\tC1C17192C16387\tC1C8193C16385",  # 2 bad_sid: the level-2 token is out of its range
        "s3\tsys\tC1C8193C16385C4\tC1C8193C16385",  # 3 bad_sid: 4 history tokens
        "s4\tsys\tno tokens here\tC1C8193C16385",  # 4 bad_sid: no history
        "s5\tsys\tC1C8193C16385\tC1C8193C16385 and text",  # 5 bad_sid: answer not only tokens
        sequence_row("s6", hist, ans),  # 6 ok
    ]
    write_lines(resolve(str(tmp_path / "t.csv")), "id\tsystem\tuser\tanswer", lines)
    report = _convert(str(tmp_path), max_reject_fraction=1.0, format="sequences", input=str(tmp_path / "t.csv"))
    assert report.tables["sequences"].rejected == {"malformed_row": 1, "bad_sid": 4}
    src = str(tmp_path / "t.csv")
    assert _rejects(str(tmp_path)) == [(src, 1, "malformed_row")] + [(src, r, "bad_sid") for r in (2, 3, 4, 5)]
    detail = read_table(resolve(str(tmp_path / "out" / "rejects"))).sort_by("row")["detail"].to_pylist()
    assert detail[1] == "user: token 1 (C17192) is level 2 of item 0, expected C8192..C16383"
    assert detail[2] == "user: 4 tokens, not a multiple of 3 levels"
    seq = read_table(resolve(str(tmp_path / "out" / "sequences")))
    assert sorted(set(seq["user_row"].to_pylist())) == [0, 6] and seq.num_rows == 6
