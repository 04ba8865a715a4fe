from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from simcit_dist.data import base62


def test_known_values_and_alphabet_order() -> None:
    assert base62.decode("0") == 0
    assert base62.decode("9") == 9 and base62.decode("A") == 10 and base62.decode("z") == 61
    assert base62.decode("10") == 62
    assert base62.decode("AzL8n0Y58m7") == 2**63 - 1
    assert base62.encode_one(62**5 + 3) == "100003"
    # Another digit order gives other values: the alphabet is part of the id definition.
    lower_first = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert base62.decode("a", lower_first) == 10 and base62.decode("A", lower_first) == 36


def test_round_trip_is_exact() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([[0, 1, 61, 62, 62**10 - 1, 62**10, 2**63 - 1], rng.integers(0, 2**63 - 1, 5000)])
    strings = base62.encode_array(values)
    decoded, status = base62.decode_array(strings)
    assert (status == base62.OK).all()
    np.testing.assert_array_equal(decoded, values)
    assert base62.encode_array(decoded).to_pylist() == strings.to_pylist()


def test_status_of_each_bad_kind() -> None:
    arr = pa.array(["Ab", "AzL8n0Y58m8", "zzzzzzzzzzz", "100000000000", "0", "00", "0Ab", "A-b", "", None, "é"])
    values, status = base62.decode_array(arr)
    assert status.tolist() == [base62.OK, base62.OVERFLOW, base62.OVERFLOW, base62.OVERFLOW, base62.OK,
                               base62.BAD, base62.BAD, base62.BAD, base62.BAD, base62.BAD, base62.BAD]
    assert values[0] == 10 * 62 + 37 and values[4] == 0
    assert (values[status != base62.OK] == 0).all()
    # Sliced and binary arrays decode the same way.
    sliced_values, sliced_status = base62.decode_array(arr.slice(6, 3))
    assert sliced_status.tolist() == [base62.BAD] * 3
    assert base62.decode_array(pa.array([b"10"], pa.binary()))[0].tolist() == [62]


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="overflows int64"):
        base62.decode("AzL8n0Y58m8")
    with pytest.raises(ValueError, match="not a canonical base62 id"):
        base62.decode("0A")
    with pytest.raises(ValueError, match="62 distinct ASCII characters"):
        base62.check_alphabet("0123")
    with pytest.raises(ValueError, match=">= 0"):
        base62.encode_array(np.array([-1]))
