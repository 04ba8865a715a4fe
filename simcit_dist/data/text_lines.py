"""Read a big line-oriented file (CSV/TSV) as byte ranges, one Ray task per range, in bounded memory.

A file is cut into ranges of ``range_bytes``; a line belongs to the range in which it *starts*,
so a reader of ``[start, end)`` skips the partial line at ``start`` and reads past ``end`` to
finish its last line. This needs lines without embedded newlines (no quoted multi-line
fields), which holds for the AL-GR formats (base62/base64 fields, tab-separated SID prompts).

Rejects must name their row, so each range needs the global number of its first line.
:func:`line_ranges` gets it from a counting pass (one Ray task per range counts newlines at
memory speed), i.e. the file is read twice; for a file of one range there is no extra pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import ray

from simcit_dist.storage import Location

BLOCK_BYTES = 8 << 20
MAX_LINE_BYTES = 256 << 20  # a "line" longer than this means the file is not line-oriented


@dataclass(frozen=True)
class LineRange:
    start: int  # byte offsets; the range holds the lines starting in [start, end)
    end: int
    first_line: int  # 0-based index (in the whole file) of the first line starting in the range


def file_size(loc: Location) -> int:
    info = loc.fs.get_file_info(loc.path)
    if info.size is None:
        raise FileNotFoundError(f"{loc.uri}: not found")
    return int(info.size)


def count_newlines(loc: Location, start: int, end: int) -> tuple[int, bool]:
    """(number of b'\\n' in bytes [start, end), whether byte end-1 is b'\\n')."""
    count, last = 0, b""
    with loc.fs.open_input_file(loc.path) as f:
        f.seek(start)
        left = end - start
        while left > 0:
            block = f.read(min(BLOCK_BYTES, left))
            if not block:
                break
            count += block.count(b"\n")
            last = block[-1:]
            left -= len(block)
    return count, last == b"\n"


_count_task = ray.remote(count_newlines)


def line_ranges(loc: Location, range_bytes: int) -> list[LineRange]:
    """Cut ``loc`` into ranges and number their first lines (a parallel counting pass if > 1 range)."""
    size = file_size(loc)
    bounds = [(s, min(s + range_bytes, size)) for s in range(0, max(size, 1), range_bytes)]
    if len(bounds) == 1:
        return [LineRange(0, size, 0)]
    counts = ray.get([_count_task.remote(loc, s, e) for s, e in bounds])
    # Lines starting before offset e: 1 + newlines in [0, e - 1).
    firsts = [0] + [1 + n - int(last) for n, last in itertools.accumulate(
        counts[:-1], lambda acc, c: (acc[0] + c[0], c[1]))]
    return [LineRange(s, e, first) for (s, e), first in zip(bounds, firsts)]


def iter_lines(loc: Location, start: int, end: int) -> Iterator[bytes]:
    """The lines starting in bytes ``[start, end)``, without their ``\\n`` / ``\\r\\n``.

    Memory is one read block plus one line.
    """
    with loc.fs.open_input_file(loc.path) as f:
        size = f.size()
        end = min(end, size)
        pos = start
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":  # the line at `start` began in the previous range
                pos = _next_line_start(f, start, loc.uri)
        f.seek(pos)
        buf, buf_pos = bytearray(), pos
        eof = False
        while pos < end:
            nl = buf.find(b"\n", pos - buf_pos)
            while nl < 0 and not eof:
                del buf[: pos - buf_pos]
                buf_pos = pos
                block = f.read(BLOCK_BYTES)
                eof = not block
                buf += block
                if len(buf) > MAX_LINE_BYTES:
                    raise ValueError(f"{loc.uri}: line at byte {pos} is longer than {MAX_LINE_BYTES} bytes; "
                                     "is this a line-oriented (CSV/TSV) file?")
                nl = buf.find(b"\n")
            line_end = nl if nl >= 0 else len(buf)
            line = bytes(buf[pos - buf_pos: line_end])
            yield line[:-1] if line.endswith(b"\r") else line
            pos = buf_pos + line_end + 1
            if nl < 0:
                break


def _next_line_start(f: object, start: int, uri: str) -> int:
    pos = start
    while True:
        block = f.read(BLOCK_BYTES)  # type: ignore[attr-defined]
        if not block:
            return pos
        nl = block.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(block)
        if pos - start > MAX_LINE_BYTES:
            raise ValueError(f"{uri}: no line break within {MAX_LINE_BYTES} bytes after byte {start}")


def first_line(loc: Location) -> bytes:
    """The first line of a file (a CSV header), or b'' for an empty file."""
    return next(iter_lines(loc, 0, 1), b"")
