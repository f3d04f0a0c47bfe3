"""The contract of `haodian bench rfm`: a small real run on its own fresh database ends with
the JSON line, scores every member it made, and its segment holds what the rule says (checked
here against the naive loop's own count). Rates are printed, not judged."""

from __future__ import annotations

import json

from tests.conftest import run_bench

KEYS = {
    "members",
    "growth_events",
    "scored",
    "segment_size",
    "set_members_per_s",
    "loop_members_per_s",
    "set_vs_loop",
    "set_80m_minutes",
    "loop_80m_hours",
}


def test_bench_rfm_scores_everyone_and_ends_with_its_json_line() -> None:
    # the bench makes (and drops) a database next to its own
    done = run_bench("rfm", "--members", "4000", "--loop-members", "4000", with_redis=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert KEYS <= summary.keys()
    assert summary["scored"] == summary["members"] == 4000
    assert summary["growth_events"] > 4000
    # Over the same 4,000 members the loop counted the segment member by member.
    assert summary["segment_size"] == summary["loop_segment_size"]
    assert summary["set_members_per_s"] > 0 and summary["loop_members_per_s"] > 0
