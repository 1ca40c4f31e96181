"""Log-spaced histogram buckets for latency and metric values.

A value x > 0 falls into bucket i = ceil(log_gamma(x)), whose range is
(gamma**(i-1), gamma**i]. Reporting a bucket by 2 * gamma**i / (gamma + 1)
is off by at most ALPHA relative to any value in it (the DDSketch bound), so a
quantile read from the buckets is within ALPHA of the exact nearest-rank
quantile of the raw values. ALPHA = 0.02 keeps the estimate well inside 5 %
and still needs only about 60 buckets per decade-pair of range.

Buckets are stored as the JSON text of a mapping from key to count, with keys
"p<i>" for positive values, "n<i>" for negative values (by magnitude) and
"z" for values whose magnitude is below MIN_MAGNITUDE. Readers outside Python
can use SQLite's `json_each()` on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import orjson

ALPHA = 0.02
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_INV_LOG_GAMMA = 1 / math.log(GAMMA)
MIN_MAGNITUDE = 1e-9
ZERO_KEY = "z"


def bucket_key(value: float) -> str:
    """Return the bucket key of `value`."""
    magnitude = abs(value)
    if magnitude < MIN_MAGNITUDE:
        return ZERO_KEY
    index = math.ceil(math.log(magnitude) * _INV_LOG_GAMMA)
    return f"p{index}" if value > 0 else f"n{index}"


def bucket_value(key: str) -> float:
    """Return the representative value of bucket `key` (within ALPHA of all its members)."""
    if key == ZERO_KEY:
        return 0.0
    magnitude = 2 * GAMMA ** int(key[1:]) / (GAMMA + 1)
    return magnitude if key[0] == "p" else -magnitude


def add_values(buckets: dict[str, int], values: Iterable[float]) -> None:
    """Count each of `values` into `buckets` in place."""
    for value in values:
        key = bucket_key(value)
        buckets[key] = buckets.get(key, 0) + 1


def merge(into: dict[str, int], other: Mapping[str, int]) -> None:
    """Add the counts of `other` to `into` in place."""
    for key, count in other.items():
        into[key] = into.get(key, 0) + count


def encode(buckets: Mapping[str, int]) -> str:
    return orjson.dumps(buckets).decode()


def encode_indexed(buckets: Mapping[int | str, int]) -> str:
    """Encode a bucket map whose positive buckets are keyed by their int index i (key "p<i>")."""
    return encode(
        {(f"p{key}" if type(key) is int else key): count for key, count in buckets.items()}
    )


def decode(text: str | None) -> dict[str, int]:
    if not text:
        return {}
    return orjson.loads(text)


def merge_json(left: str | None, right: str | None) -> str:
    """Merge two encoded bucket maps; registered as an SQLite function for rollup upserts.

    Runs once per updated rollup row inside the writer's transaction, so it
    skips the decode when one side is empty.
    """
    if not right or right == "{}":
        return left or "{}"
    if not left or left == "{}":
        return right
    merged = orjson.loads(left)
    for key, count in orjson.loads(right).items():
        merged[key] = merged.get(key, 0) + count
    return orjson.dumps(merged).decode()


# Representative values of the bucket keys seen so far, for ordering buckets
# with a C-level key function. Bucket indexes of finite values lie between
# about -520 and 17,750, so the map has at most some 36,000 entries.
_VALUES: dict[str, float] = {}


def _ordered_keys(buckets: Mapping[str, int]) -> list[str]:
    """Return the keys of `buckets` from the lowest to the highest bucket value."""
    values = _VALUES
    for key in buckets.keys() - values.keys():
        values[key] = bucket_value(key)
    return sorted(buckets, key=values.__getitem__)


def quantiles(
    buckets: Mapping[str, int],
    qs: Iterable[float],
    minimum: float | None = None,
    maximum: float | None = None,
) -> list[float | None]:
    """Estimate the nearest-rank quantiles `qs` (0 < q <= 1) from `buckets`.

    The exact minimum and maximum, when known, clamp the estimates, so no
    estimate leaves the observed range, and the top rank returns the maximum.
    Returns None for each quantile when the buckets are empty.
    """
    qs = list(qs)
    total = sum(buckets.values())
    if total == 0:
        return [None] * len(qs)
    ordered = _ordered_keys(buckets)
    values = _VALUES
    results: list[float | None] = []
    for q in qs:
        rank = max(1, math.ceil(q * total))
        if rank >= total and maximum is not None:
            results.append(maximum)  # the top rank is the maximum itself, known exactly
            continue
        seen = 0
        estimate = values[ordered[-1]]
        for key in ordered:
            seen += buckets[key]
            if seen >= rank:
                estimate = values[key]
                break
        if minimum is not None:
            estimate = max(estimate, minimum)
        if maximum is not None:
            estimate = min(estimate, maximum)
        results.append(estimate)
    return results
