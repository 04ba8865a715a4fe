"""Base62 item ids (AL-GR's ``base62_string``) <-> int64 ``item_id``, vectorised.

Convention (the order most base62 encoders use, e.g. GMP): the alphabet is ``0-9``, then
``A-Z``, then ``a-z`` (digit values 0..61), most significant digit first, so ``"10"`` is 62
and ``"AzL8n0Y58m7"`` is 2**63 - 1, the largest int64. Another alphabet can be configured
(``algr.base62_alphabet``) if a source turns out to use ``0-9a-zA-Z``.

Only canonical strings are accepted: no leading ``'0'`` (except ``"0"`` itself). That makes
decoding injective (``"0Ab"`` and ``"Ab"`` would otherwise be the same int64 and silently merge
two items) and lets us rebuild the original string from the int64 exactly, so converters
never hold a second copy of hundreds of millions of id strings: ``encode(decode(s)) == s``.

Status codes returned by :func:`decode_array` map to reject reasons: ``BAD`` -> ``bad_id``
(null, empty, a character outside the alphabet, or a leading zero), ``OVERFLOW`` ->
``id_overflow`` (a canonical number above 2**63 - 1).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
INT64_MAX = np.iinfo(np.int64).max
MAX_DIGITS = 11  # 62**10 < 2**63 - 1 < 62**11: an int64 needs at most 11 digits
OK, BAD, OVERFLOW = 0, 1, 2


def check_alphabet(alphabet: str) -> None:
    """62 distinct ASCII characters, or a ValueError naming what is wrong."""
    if len(alphabet) != 62 or len(set(alphabet)) != 62 or not alphabet.isascii():
        raise ValueError(f"base62 alphabet must be 62 distinct ASCII characters, got {len(alphabet)} "
                         f"({len(set(alphabet))} distinct): {alphabet!r}")


def _lookup(alphabet: str) -> np.ndarray:
    check_alphabet(alphabet)
    table = np.full(256, -1, dtype=np.int16)
    table[np.frombuffer(alphabet.encode(), dtype=np.uint8)] = np.arange(62, dtype=np.int16)
    return table


def decode(text: str, alphabet: str = ALPHABET) -> int:
    """One id (reference implementation; raises ValueError with the reason)."""
    values, status = decode_array(pa.array([text], pa.string()), alphabet)
    if status[0] == BAD:
        raise ValueError(f"{text!r} is not a canonical base62 id over {alphabet[:3]}...{alphabet[-3:]}")
    if status[0] == OVERFLOW:
        raise ValueError(f"{text!r} overflows int64 (max {encode_one(INT64_MAX, alphabet)!r})")
    return int(values[0])


def encode_one(value: int, alphabet: str = ALPHABET) -> str:
    return encode_array(np.array([value], dtype=np.int64), alphabet)[0].as_py()


def decode_array(ids: pa.Array | pa.ChunkedArray, alphabet: str = ALPHABET) -> tuple[np.ndarray, np.ndarray]:
    """(values int64, status uint8) for an Arrow string/binary array; values are 0 where status != OK.

    Works on the Arrow buffers directly (no Python string per row): bytes are mapped to digits
    with a lookup table and the last 11 bytes of each id are summed positionally.
    """
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    arr = arr.cast(pa.large_binary())
    n = len(arr)
    table = _lookup(alphabet)
    validity, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None and data_buf.size else np.zeros(1, np.uint8)
    lengths = np.diff(offsets)
    present = ~arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.ones(n, dtype=bool)

    # Characters outside the alphabet, counted per id through a prefix sum over all bytes.
    bad_bytes = np.concatenate([[0], np.cumsum(table[data] < 0)])
    bad_chars = (bad_bytes[np.minimum(offsets[1:], data.size)] - bad_bytes[np.minimum(offsets[:-1], data.size)]) > 0
    first = data[np.minimum(offsets[:-1], data.size - 1)]
    leading_zero = (lengths > 1) & (first == ord(alphabet[0]))
    bad = ~present | (lengths == 0) | bad_chars | leading_zero

    status = np.where(bad, BAD, OK).astype(np.uint8)
    status[~bad & (lengths > MAX_DIGITS)] = OVERFLOW
    fits = status == OK

    # Right-align the (at most 11) digits of each id in an (n, 11) matrix; absent digits are 0.
    cols = np.arange(MAX_DIGITS)
    inside = cols[None, :] >= (MAX_DIGITS - np.where(fits, lengths, 0))[:, None]
    pos = np.where(inside, offsets[1:, None] - MAX_DIGITS + cols[None, :], 0)
    digits = np.where(inside, table[data[pos]], 0).astype(np.int64)
    # The first 10 digits fit in int64 (62**10 - 1 < 2**63); the 11th is checked before it is added.
    weights = 62 ** np.arange(MAX_DIGITS - 2, -1, -1, dtype=np.int64)
    high = digits[:, :-1] @ weights
    last = digits[:, -1]
    overflow = fits & (high > (INT64_MAX - last) // 62)
    status[overflow] = OVERFLOW
    values = np.where(status == OK, high * 62 + last, 0)
    return values.astype(np.int64), status


def encode_array(values: np.ndarray, alphabet: str = ALPHABET) -> pa.StringArray:
    """int64 ids >= 0 -> canonical base62 strings (the inverse of :func:`decode_array`)."""
    check_alphabet(alphabet)
    values = np.asarray(values, dtype=np.int64)
    if values.size and values.min() < 0:
        raise ValueError(f"base62 encodes ids >= 0, got {int(values.min())}")
    digits = np.empty((values.size, MAX_DIGITS), dtype=np.int64)
    rest = values.copy()
    for col in range(MAX_DIGITS - 1, -1, -1):
        digits[:, col] = rest % 62
        rest //= 62
    significant = np.maximum(MAX_DIGITS - np.argmax(digits != 0, axis=1), 1)
    significant[(digits == 0).all(axis=1)] = 1  # the id 0 is "0"
    chars = np.frombuffer(alphabet.encode(), dtype=np.uint8)[digits]
    keep = np.arange(MAX_DIGITS)[None, :] >= (MAX_DIGITS - significant)[:, None]
    data = chars[keep]  # row-major: each id's digits, most significant first
    offsets = np.concatenate([[0], np.cumsum(significant)]).astype(np.int64)
    return pa.Array.from_buffers(pa.large_string(), values.size, [None, pa.py_buffer(offsets),
                                                                   pa.py_buffer(data.tobytes())]).cast(pa.string())
