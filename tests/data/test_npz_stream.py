from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from simcit_dist.data.npz_stream import iter_rows, load_object_member, npz_members, read_member
from simcit_dist.data.schemas import SchemaError
from simcit_dist.storage import resolve, write_bytes


def _save(path, compressed=False, **arrays):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    write_bytes(resolve(str(path)), buf.getvalue())
    return resolve(str(path))


@pytest.mark.parametrize("compressed", [False, True])
def test_row_ranges_match_np_load(tmp_path, compressed: bool) -> None:
    rng = np.random.default_rng(0)
    embeds = rng.standard_normal((1000, 16)).astype(">f4")  # big-endian on purpose
    loc = _save(tmp_path / "a.npz", compressed, embeds=embeds, pairs=np.arange(40).reshape(20, 2))
    members = npz_members(loc)
    m = members["embeds"]
    assert m.shape == (1000, 16) and m.compressed == compressed and m.row_bytes == 64
    chunks = list(iter_rows(loc, m, 123, 877, chunk_rows=100))
    assert [first for first, _ in chunks] == list(range(123, 877, 100))
    assert max(len(c) for _, c in chunks) == 100
    got = np.concatenate([c for _, c in chunks])
    assert got.dtype == np.dtype("float32") and got.dtype.isnative
    np.testing.assert_array_equal(got, embeds[123:877].astype(np.float32))
    np.testing.assert_array_equal(read_member(loc, members["pairs"]), np.arange(40).reshape(20, 2))


def test_object_member_needs_allow_pickle(tmp_path) -> None:
    loc = _save(tmp_path / "c.npz", itemEncID={"a": 0, "b": 1})
    m = npz_members(loc)["itemEncID"]
    with pytest.raises(SchemaError, match="pickled Python object.*allow_pickle"):
        load_object_member(loc, m, allow_pickle=False)
    assert load_object_member(loc, m, allow_pickle=True) == {"a": 0, "b": 1}
    with pytest.raises(SchemaError, match="cannot be streamed"):
        list(iter_rows(loc, m))


def test_fortran_order_and_truncation_are_file_errors(tmp_path) -> None:
    loc = _save(tmp_path / "f.npz", embeds=np.asfortranarray(np.ones((4, 3), np.float32)))
    with pytest.raises(SchemaError, match="Fortran"):
        list(iter_rows(loc, npz_members(loc)["embeds"]))
    # A member whose data is shorter than its header says.
    buf = io.BytesIO()
    np.save(buf, np.ones((10, 4), np.float32))
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("embeds.npy", buf.getvalue()[:-16])
    write_bytes(resolve(str(tmp_path / "t.npz")), zbuf.getvalue())
    with pytest.raises(SchemaError, match=r"t.npz::embeds: member is .* bytes, expected .* \(truncated or corrupt\)"):
        npz_members(resolve(str(tmp_path / "t.npz")))
    write_bytes(resolve(str(tmp_path / "x.npz")), b"not a zip")
    with pytest.raises(SchemaError, match="not an npz"):
        npz_members(resolve(str(tmp_path / "x.npz")))
