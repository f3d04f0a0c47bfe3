"""`haodian bench NAME`: benchmarks that compare approaches side by side in one run.

A bench module (listed in BENCH_MODULES) exposes NAME, HELP, `configure(parser)` and
`run(args) -> int`, and reports with `print_report`: a table for people, then one JSON
line for machines (the last line of output).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
from collections.abc import Sequence
from typing import Any

import orjson

BENCH_MODULES: list[str] = [
    "server.flashsale.bench",
    "server.coupons.bench",
    "server.groupbuy.bench",
    "server.stores.bench",
    "server.identity.bench",
    "server.membership.bench",
]


def modules() -> list[Any]:
    return [importlib.import_module(m) for m in BENCH_MODULES]


def add_parsers(sub: Any) -> None:
    bench = sub.add_parser("bench", help="run a benchmark (see `haodian bench --help`)")
    bsub = bench.add_subparsers(dest="bench_name", required=True, metavar="NAME")
    for mod in modules():
        p = bsub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.configure(p)


def run(args: argparse.Namespace) -> int:
    for mod in modules():
        if mod.NAME == args.bench_name:
            return int(mod.run(args))
    return 2


def percentile(samples: Sequence[float], q: float) -> float:
    """q in [0, 100]; nearest-rank on a sorted copy."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summarise_latencies(samples_s: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples_s, 50) * 1000, 3),
        "p99_ms": round(percentile(samples_s, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples_s) * 1000, 3) if samples_s else float("nan"),
    }


def print_report(title: str, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """A table of rows (same keys each), then the summary as one JSON line."""
    print(f"\n{title}")
    if rows:
        cols = list(rows[0].keys())
        widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
        print("  ".join(c.ljust(widths[c]) for c in cols))
        print("  ".join("-" * widths[c] for c in cols))
        for r in rows:
            print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in cols))
    for key, value in summary.items():
        if not isinstance(value, (dict, list)):
            print(f"{key}: {_fmt(value)}")
    print(orjson.dumps(summary).decode(), flush=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)
