"""Run every benchmark in one process run and write BENCHMARKS.md.

`make bench` calls this. Each comparison is measured side by side in the same
run, so the ratios hold for this machine even when the absolute numbers drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench import dashboard_bench, ingest_bench, middleware_bench, writer_bench
from bench.common import machine_description, markdown_table, today

OUTPUT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"

WRITER_MIN_SHARE_OF_LIMIT = 0.5
WRITER_MIN_OVER_NAIVE = 300
MIDDLEWARE_MAX_US = 10.0
MIDDLEWARE_MAX_SHARE_OF_INSTRUMENTATOR = 0.5
INGEST_MIN_EVENTS_PER_SECOND = 100_000


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def writer_section(results: dict) -> str:
    hauswacht, limit, naive = results["hauswacht"], results["limit"], results["naive"]
    share = hauswacht / limit
    over_naive = hauswacht / naive
    rows = [
        ["bare executemany, one unindexed table (limit)", f"{limit:,.0f}", "1.00", ""],
        [
            "Hauswacht writer, raw rows + hourly rollups",
            f"{hauswacht:,.0f}",
            f"{share:.2f}",
            f"≥ {WRITER_MIN_SHARE_OF_LIMIT:.2f} of the limit: {verdict(share >= 0.5)}",
        ],
        [
            "connect, insert, commit per event (naive)",
            f"{naive:,.0f}",
            f"{naive / limit:.4f}",
            f"Hauswacht is {over_naive:,.0f}× this; target > {WRITER_MIN_OVER_NAIVE}×: "
            f"{verdict(over_naive > WRITER_MIN_OVER_NAIVE)}",
        ],
    ]
    return (
        "## Writer throughput\n\n"
        f"{results['events']:,} request events in batches of {results['batch_size']:,}; "
        f"the naive approach on the first {results['naive_events']:,} of them. "
        "Median of three interleaved runs, events persisted per second "
        "(`bench/writer_bench.py`).\n\n"
        + markdown_table(["approach", "events/s", "ratio to limit", "target"], rows)
        + "\n\nThe naive approach pays one synchronous commit per event, "
        f"{1000 / naive:.2f} ms each on this machine; on a disk with slower fsync it is "
        "slower and the ratio over it larger. Here the limit itself is "
        f"{limit / naive:,.0f}× the naive rate, so more than {WRITER_MIN_OVER_NAIVE}× "
        f"would take {WRITER_MIN_OVER_NAIVE * naive / limit:.2f} of the limit, while the "
        "writer also aggregates every event into rollups in Python."
    )


def middleware_section(results: dict) -> str:
    bare = results["bare"]
    added = {name: value - bare for name, value in results.items()}
    ours = added["hauswacht"]
    theirs = added["instrumentator"]
    rows = [
        ["no middleware", f"{bare:.1f}", "0.0", ""],
        [
            "HauswachtMiddleware (writer running)",
            f"{results['hauswacht']:.1f}",
            f"{ours:.1f}",
            f"≤ {MIDDLEWARE_MAX_US:.0f} µs: {verdict(ours <= MIDDLEWARE_MAX_US)}; "
            f"{ours / theirs:.2f} of the instrumentator's cost, target < 0.5: "
            f"{verdict(ours < MIDDLEWARE_MAX_SHARE_OF_INSTRUMENTATOR * theirs)}",
        ],
        [
            "prometheus-fastapi-instrumentator",
            f"{results['instrumentator']:.1f}",
            f"{theirs:.1f}",
            "",
        ],
        [
            "BaseHTTPMiddleware + one SQLite insert per request",
            f"{results['sqlite_per_request']:.1f}",
            f"{added['sqlite_per_request']:.1f}",
            "",
        ],
    ]
    return (
        "## Middleware cost per request\n\n"
        "In-process ASGI calls of one Starlette app with a templated JSON route, "
        "no sockets; median µs per request over interleaved rounds "
        "(`bench/middleware_bench.py`).\n\n"
        + markdown_table(["variant", "µs per request", "µs added", "target"], rows)
    )


def ingest_section(results: dict) -> str:
    limit = results["limit"]
    ndjson = results["ndjson"]
    rows = [
        ["bare executemany, one unindexed table (limit)", f"{limit:,.0f} events/s", "1.00", ""],
        [
            f"NDJSON POSTs of {results['batch_size']:,} events over loopback, into the database",
            f"{ndjson:,.0f} events/s",
            f"{ndjson / limit:.2f}",
            f"≥ {INGEST_MIN_EVENTS_PER_SECOND:,} events/s: "
            f"{verdict(ndjson >= INGEST_MIN_EVENTS_PER_SECOND)}",
        ],
        [
            "one event per POST",
            f"{results['single']:,.0f} requests/s",
            f"{results['single'] / limit:.4f}",
            "",
        ],
        [
            "Sentry envelopes (one error event each)",
            f"{results['envelope']:,.0f} envelopes/s",
            f"{results['envelope'] / limit:.4f}",
            "",
        ],
    ]
    return (
        "## Ingest over HTTP\n\n"
        f"A real `hauswacht serve` under uvicorn on 127.0.0.1 and one httpx client in the "
        f"same run: {results['events']:,} request events as NDJSON, "
        f"{results['single_posts']:,} single-event POSTs and {results['envelopes']:,} Sentry "
        "envelopes, each counted once stored in the database (`bench/ingest_bench.py`). "
        "The limit is the writer benchmark's bare executemany of the same events.\n\n"
        + markdown_table(["path", "rate", "ratio to limit", "target"], rows)
    )


def main() -> int:
    print("writer benchmark …", file=sys.stderr)
    writer_results = writer_bench.run()
    print("middleware benchmark …", file=sys.stderr)
    middleware_results = middleware_bench.run()
    print("ingest benchmark …", file=sys.stderr)
    ingest_results = ingest_bench.run()
    print("dashboard benchmark (builds cached files under bench/out/ once) …", file=sys.stderr)
    dashboard_results = dashboard_bench.run()
    text = "\n\n".join(
        [
            "# Benchmarks",
            "Written by `make bench` (`bench/run.py`); every comparison below was "
            "measured side by side in one run.\n\n"
            f"- Date: {today()}\n- Machine: {machine_description()}",
            writer_section(writer_results),
            middleware_section(middleware_results),
            ingest_section(ingest_results),
            dashboard_bench.markdown(dashboard_results),
        ]
    )
    OUTPUT.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
