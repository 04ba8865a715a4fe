"""Stream the arrays of a ``.npz`` (a zip of ``.npy`` members) in bounded row chunks.

``np.load(path, mmap_mode="r")`` does not memory-map members of a zip, and AL-GR's
``embeds`` member alone is 250M x 512 float32 = 512 GB, so we read members ourselves:

- the ``.npy`` header of each member (shape, dtype, C/Fortran order) is parsed with numpy's
  own header reader through ``zipfile``;
- a member **stored** uncompressed (``np.savez``) lies contiguously in the zip: its data starts
  at ``local header offset + 30 + name length + extra length + npy header length``. A reader
  seeks there and reads ``rows x row_bytes`` at a time, so any row range can be read by its own
  Ray task (on S3 each read is a ranged GET);
- a **compressed** member (``np.savez_compressed``) is decompressed as a stream (``zipfile``
  inflates incrementally); reaching row ``r`` means inflating everything before it, so such
  members are best read by one task front to back (re-save with ``np.savez`` to parallelise).

Object members (AL-GR's ``itemEncID`` dict) are pickles and can only be loaded whole:
:func:`load_object_member` does that, and only when the caller allows unpickling.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from simcit_dist.data.schemas import SchemaError
from simcit_dist.storage import Location

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, 22 bytes we skip, name length, extra length
_SKIP_BLOCK = 8 << 20


@dataclass(frozen=True)
class NpyMember:
    """One ``.npy`` member of an npz: where its data starts and how to read rows of it."""

    source: str  # "<npz uri>::<name>" for error messages and rejects
    name: str  # member name without ".npy"
    zip_name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    header_bytes: int  # length of the .npy header inside the member
    data_offset: int | None  # absolute offset of the data in the zip when stored uncompressed

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_bytes(self) -> int:
        return int(self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64)))

    @property
    def compressed(self) -> bool:
        return self.data_offset is None


def npz_members(loc: Location) -> dict[str, NpyMember]:
    """The members of an npz by name (without ``.npy``), headers parsed, nothing else read."""
    with loc.fs.open_input_file(loc.path) as f:
        try:
            zf = zipfile.ZipFile(f)  # type: ignore[arg-type]
        except (zipfile.BadZipFile, pa.ArrowInvalid, OSError) as e:  # pyarrow refuses seeks before byte 0
            raise SchemaError(f"{loc.uri}: not an npz (zip) file: {e}") from e
        with zf:
            return {m.name: m for m in (_member(loc, f, zf, info) for info in zf.infolist()
                                        if info.filename.endswith(".npy"))}


def _member(loc: Location, f: Any, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> NpyMember:
    name = info.filename[:-4]
    source = f"{loc.uri}::{name}"
    with zf.open(info) as m:
        try:
            version = np.lib.format.read_magic(m)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(m)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(m)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as e:
            raise SchemaError(f"{source}: not a readable .npy member: {e}") from e
        header = m.tell()
    expected = header + (0 if dtype.hasobject else int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    if not dtype.hasobject and info.file_size != expected:
        raise SchemaError(f"{source}: member is {info.file_size} bytes, expected {expected} for shape {shape} "
                          f"{dtype} (truncated or corrupt)")
    offset = None
    if info.compress_type == zipfile.ZIP_STORED:
        f.seek(info.header_offset)
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        if signature != b"PK\x03\x04":
            raise SchemaError(f"{source}: corrupt zip local header at byte {info.header_offset}")
        offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + header
    return NpyMember(source, name, info.filename, tuple(shape), dtype, bool(fortran), header, offset)


def _check_streamable(member: NpyMember) -> None:
    if member.dtype.hasobject:
        raise SchemaError(f"{member.source}: holds Python objects (a pickle); it cannot be streamed in rows")
    if member.fortran_order and len(member.shape) > 1:
        raise SchemaError(f"{member.source}: is stored in Fortran (column-major) order, so rows are not "
                          "contiguous; re-save it in C order (np.ascontiguousarray) to stream it")


def iter_rows(loc: Location, member: NpyMember, start: int = 0, stop: int | None = None,
              chunk_rows: int = 65_536) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, array of up to ``chunk_rows`` rows) for rows ``[start, stop)``, in native byte order.

    Memory is one chunk (``chunk_rows x row_bytes``), whatever the member's size.
    """
    _check_streamable(member)
    stop = member.rows if stop is None else min(stop, member.rows)
    if not 0 <= start <= stop:
        raise ValueError(f"{member.source}: bad row range [{start}, {stop}) of {member.rows} rows")
    native = member.dtype.newbyteorder("=")
    with loc.fs.open_input_file(loc.path) as f:
        if member.data_offset is not None:
            f.seek(member.data_offset + start * member.row_bytes)
            yield from _chunks(f, member, start, stop, chunk_rows, native)
            return
        with zipfile.ZipFile(f) as zf, zf.open(member.zip_name) as m:  # type: ignore[arg-type]
            _skip(m, member.header_bytes + start * member.row_bytes, member.source)
            yield from _chunks(m, member, start, stop, chunk_rows, native)


def _chunks(f: Any, member: NpyMember, start: int, stop: int, chunk_rows: int,
            native: np.dtype) -> Iterator[tuple[int, np.ndarray]]:
    row = start
    while row < stop:
        n = min(chunk_rows, stop - row)
        want = n * member.row_bytes
        buf = f.read(want)
        if len(buf) != want:
            raise SchemaError(f"{member.source}: ended after {len(buf)} of {want} bytes at row {row} (truncated)")
        arr = np.frombuffer(buf, dtype=member.dtype).reshape((n,) + member.shape[1:])
        yield row, arr if member.dtype == native else arr.astype(native)
        row += n


def _skip(stream: Any, nbytes: int, source: str) -> None:
    """Advance a decompressing stream by reading and discarding (zip streams cannot seek cheaply)."""
    while nbytes > 0:
        got = len(stream.read(min(nbytes, _SKIP_BLOCK)))
        if got == 0:
            raise SchemaError(f"{source}: ended early while skipping to the requested rows")
        nbytes -= got


def read_member(loc: Location, member: NpyMember) -> np.ndarray:
    """A whole (small) numeric member, e.g. a test fixture or a 1-D id array of bounded size."""
    parts = [chunk for _, chunk in iter_rows(loc, member)]
    return np.concatenate(parts) if parts else np.empty((0,) + member.shape[1:], dtype=member.dtype)


def load_object_member(loc: Location, member: NpyMember, allow_pickle: bool) -> Any:
    """Unpickle an object member whole (e.g. AL-GR's ``itemEncID`` dict).

    Unpickling runs code from the file, so it needs ``allow_pickle`` (only for trusted files).
    Memory is the whole object: a 250M-entry Python dict of string keys takes tens of GB.
    """
    if not allow_pickle:
        raise SchemaError(f"{member.source}: is a pickled Python object; loading it runs code from the file. "
                          "Set allow_pickle: true in the converter config if you trust this file")
    with loc.fs.open_input_file(loc.path) as f, zipfile.ZipFile(f) as zf, zf.open(member.zip_name) as m:  # type: ignore[arg-type]
        arr = np.lib.format.read_array(m, allow_pickle=True)
    return arr.item() if arr.shape == () else arr
