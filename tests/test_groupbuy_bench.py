"""The contract of `haodian bench groupbuy`: a shortened real run ends with the JSON line
other tools read, every 201 took exactly one seat, no group holds more than its size and no
unit was reserved twice. Rates are printed, not judged: on a shared machine a timed
assertion would only measure the neighbours."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import run_bench

# What readers of the JSON line rely on.
RATES = ("json_rps", "join_rps", "full_rps", "json_same_generator_rps")
COUNTERS = ("oversold", "groups_over_size")
RUN = ("connections", "workers", "duration_s", "rounds")
CONTRACT_KEYS = {*RATES, *COUNTERS, *RUN, "join_vs_json", "json_cpu_us", "join_cpu_us"}

# About 30 s: preparing ~6,700 groups, the server's start, 1 s per endpoint, the check.
SHORT_RUN = ("--duration", "1", "--rounds", "1", "--members", "300", "--connections", "16")


def _bench(*options: str) -> subprocess.CompletedProcess[str]:
    return run_bench("groupbuy", *options)


def test_bench_groupbuy_ends_with_its_json_line() -> None:
    done = _bench(*SHORT_RUN)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert CONTRACT_KEYS <= summary.keys()
    assert [summary[k] for k in COUNTERS] == [0, 0]
    # Every 201 took a seat, and the refusal path measured full groups (which stayed full).
    assert summary["join_answers_match_seats_taken"] is True
    assert summary["join_2xx"] > 0
    assert summary["full_answer"] == "409 GROUP_FULL"
    assert summary["full_groups_full"] == summary["full_groups"] > 0
    # Units: exactly one group's worth reserved per group opened, none left over or short.
    assert summary["units"] - summary["units_left"] == summary["groups"] * summary["group_size"]
    assert all(summary[k] > 0 for k in RATES), {k: summary[k] for k in RATES}
    assert abs(summary["join_vs_json"] - summary["join_rps"] / summary["json_rps"]) < 0.01
    assert abs(summary["full_vs_json"] - summary["full_rps"] / summary["json_rps"]) < 0.01
    same = summary["join_rps"] / summary["json_same_generator_rps"]
    assert abs(summary["join_vs_json_same_generator"] - same) < 0.01
    assert (summary["connections"], summary["duration_s"], summary["rounds"]) == (16, 1, 1)
    # The table comes first, one row per endpoint.
    table = "\n".join(lines[:-1])
    for row in ("(a) plain JSON", "(a') same", "(b) join, success path", "(c) join a full group"):
        assert row in table
