from __future__ import annotations

import numpy as np
import pytest

from simcit_dist.data.text_lines import first_line, iter_lines, line_ranges
from simcit_dist.storage import resolve, write_bytes


def _lines(rng: np.random.Generator, n: int) -> list[bytes]:
    return [b"x" * int(k) + str(i).encode() for i, k in enumerate(rng.integers(0, 40, n))]


@pytest.mark.parametrize(("newline", "trailing"), [(b"\n", True), (b"\r\n", True), (b"\n", False)])
def test_ranges_cover_every_line_once_with_global_numbers(tmp_path, ray_local, newline: bytes,
                                                          trailing: bool) -> None:
    lines = _lines(np.random.default_rng(1), 300)
    lines[17] = b""  # an empty line in the middle is a line
    data = newline.join(lines) + (newline if trailing else b"")
    loc = resolve(str(tmp_path / "f.txt"))
    write_bytes(loc, data)
    for range_bytes in (7, 64, 1000, len(data) + 5):
        got: list[tuple[int, bytes]] = []
        for rng in line_ranges(loc, range_bytes):
            got += list(enumerate(iter_lines(loc, rng.start, rng.end), start=rng.first_line))
        assert got == list(enumerate(lines)), range_bytes
    assert first_line(loc) == lines[0]


def test_empty_file(tmp_path) -> None:
    loc = resolve(str(tmp_path / "e.txt"))
    write_bytes(loc, b"")
    assert [list(iter_lines(loc, r.start, r.end)) for r in line_ranges(loc, 10)] == [[]]
    assert first_line(loc) == b""
