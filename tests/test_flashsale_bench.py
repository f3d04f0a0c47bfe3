"""`haodian bench flashsale` keeps its contract: a short run on a database and Redis of its
own ends with the JSON line outside clients read, and its correctness counters hold.

No speed is asserted here (a timed test on a shared machine says nothing): the run is
the real bench, shortened, so the figures it prints are real but not judged."""

from __future__ import annotations

import json

from tests.conftest import run_bench

CONTRACT_KEYS = {
    "json_rps",
    "grab_rps",
    "soldout_rps",
    "pg_baseline_rps",
    "evalsha_ops",
    "grab_vs_json",
    "grab_vs_pg",
    "oversold",
    "successes",
    "units",
}


def test_bench_flashsale_ends_with_its_json_line() -> None:
    done = run_bench(
        "flashsale", "--duration", "1", "--rounds", "1", "--members", "300", "--connections", "16"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert CONTRACT_KEYS <= summary.keys()
    # The sold-out sale has 100 units, one per member: exactly 100 successes, none oversold.
    assert summary["units"] == 100
    assert summary["successes"] == 100
    assert summary["oversold"] == 0
    assert summary["over_limit"] == 0
    assert summary["grab_answers_match_units_taken"] is True
    for key in ("json_rps", "grab_rps", "soldout_rps", "pg_baseline_rps", "evalsha_ops"):
        assert summary[key] > 0, key
    assert abs(summary["grab_vs_json"] - summary["grab_rps"] / summary["json_rps"]) < 0.01
    assert abs(summary["grab_vs_pg"] - summary["grab_rps"] / summary["pg_baseline_rps"]) < 0.5
    # The table comes first, one row per endpoint.
    table = "\n".join(lines[:-1])
    for row in ("(a) plain JSON", "(b) grab, success path", "(c) grab, sold-out", "(d) PostgreSQL"):
        assert row in table
