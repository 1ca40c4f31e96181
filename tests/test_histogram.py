"""Log-spaced histogram buckets: error bound, merging, encoding and quantile estimates."""

from __future__ import annotations

import math
import random
import sqlite3

import pytest

from hauswacht.writer import histogram
from hauswacht.writer.aggregate import BUCKET_MERGE_FUNCTION, register_functions


@pytest.mark.parametrize("value", [1e-6, 0.003, 0.5, 1.0, 7.25, 99.9, 1234.5, 86_400_000.0])
def test_bucket_value_within_alpha(value: float) -> None:
    for signed in (value, -value):
        represented = histogram.bucket_value(histogram.bucket_key(signed))
        # At a bucket's upper edge the error is exactly ALPHA, give or take rounding.
        assert abs(represented - signed) <= histogram.ALPHA * abs(signed) * (1 + 1e-9)
        assert math.copysign(1, represented) == math.copysign(1, signed)


def test_bucket_value_bound_holds_across_range() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        value = math.exp(rng.uniform(-15, 20))
        represented = histogram.bucket_value(histogram.bucket_key(value))
        assert abs(represented - value) <= histogram.ALPHA * value * (1 + 1e-9)


def test_tiny_values_share_zero_bucket() -> None:
    assert histogram.bucket_key(0.0) == histogram.ZERO_KEY
    assert histogram.bucket_key(-1e-12) == histogram.ZERO_KEY
    assert histogram.bucket_value(histogram.ZERO_KEY) == 0.0


def test_neighbouring_values_split_at_bucket_edge() -> None:
    edge = histogram.GAMMA**10
    assert histogram.bucket_key(edge * 0.999_999) == histogram.bucket_key(edge)
    assert histogram.bucket_key(edge * 1.000_001) != histogram.bucket_key(edge)


def test_merge_json_adds_counts() -> None:
    left = histogram.encode({"p1": 2, "z": 1})
    right = histogram.encode({"p1": 3, "n4": 5})

    merged = histogram.decode(histogram.merge_json(left, right))

    assert merged == {"p1": 5, "z": 1, "n4": 5}


@pytest.mark.parametrize("empty", [None, "", "{}"])
def test_merge_json_accepts_empty_side(empty: str | None) -> None:
    text = histogram.encode({"p3": 4})
    assert histogram.decode(histogram.merge_json(empty, text)) == {"p3": 4}
    assert histogram.decode(histogram.merge_json(text, empty)) == {"p3": 4}


def test_merge_function_runs_in_sqlite() -> None:
    conn = sqlite3.connect(":memory:")
    register_functions(conn)
    (text,) = conn.execute(
        f"SELECT {BUCKET_MERGE_FUNCTION}(?, ?)", ('{"p1":1}', '{"p1":2,"p2":1}')
    ).fetchone()
    conn.close()
    assert histogram.decode(text) == {"p1": 3, "p2": 1}


def test_encoded_buckets_readable_by_json_each() -> None:
    buckets: dict[str, int] = {}
    histogram.add_values(buckets, [1.0, 1.0, 50.0])
    conn = sqlite3.connect(":memory:")
    rows = conn.execute(
        "SELECT key, value FROM json_each(?) ORDER BY value", (histogram.encode(buckets),)
    ).fetchall()
    conn.close()
    assert rows == [(histogram.bucket_key(50.0), 1), (histogram.bucket_key(1.0), 2)]


def test_quantiles_of_empty_buckets_are_none() -> None:
    assert histogram.quantiles({}, [0.5, 0.99]) == [None, None]


def test_quantiles_clamped_to_observed_range() -> None:
    buckets: dict[str, int] = {}
    values = [10.0, 20.0, 30.0, 40.0]
    histogram.add_values(buckets, values)

    low, median, high = histogram.quantiles(buckets, [0.01, 0.5, 1.0], 10.0, 40.0)

    assert low == 10.0
    assert high == 40.0
    assert median is not None
    assert abs(median - 20.0) <= histogram.ALPHA * 20.0


def test_quantiles_within_alpha_of_nearest_rank() -> None:
    rng = random.Random(99)
    values = sorted(rng.paretovariate(1.5) * 3 for _ in range(5_000))
    buckets: dict[str, int] = {}
    histogram.add_values(buckets, values)
    qs = [0.1, 0.5, 0.9, 0.95, 0.99, 0.999]

    estimates = histogram.quantiles(buckets, qs, values[0], values[-1])

    for q, estimate in zip(qs, estimates, strict=True):
        exact = values[math.ceil(q * len(values)) - 1]
        assert estimate is not None
        assert abs(estimate - exact) <= histogram.ALPHA * exact * (1 + 1e-9), q


def test_quantiles_order_negative_values_first() -> None:
    buckets: dict[str, int] = {}
    histogram.add_values(buckets, [-100.0, -1.0, 0.0, 5.0])

    estimates = histogram.quantiles(buckets, [0.25, 0.5, 0.75, 1.0])

    assert estimates[0] == pytest.approx(-100.0, rel=histogram.ALPHA * (1 + 1e-9))
    assert estimates[1] == pytest.approx(-1.0, rel=histogram.ALPHA * (1 + 1e-9))
    assert estimates[2] == 0.0
    assert estimates[3] == pytest.approx(5.0, rel=histogram.ALPHA * (1 + 1e-9))
