"""`haodian bench coupons` keeps its contract: a short run on a database and Redis of its own
ends with the JSON line outside clients read, and its correctness counters hold.

No speed is asserted (a timed test on a shared machine says nothing): the run is the real
bench, shortened; the figures it prints are real but not judged."""

from __future__ import annotations

import json

from tests.conftest import run_bench

SHORT_RUN = ["--duration", "1", "--rounds", "1", "--members", "300", "--connections", "16"]
SHORT_RUN += ["--issue", "20000"]

CONTRACT_KEYS = {
    "json_rps",
    "claim_rps",
    "soldout_rps",
    "pg_claim_rps",
    "claim_vs_json",
    "claim_vs_pg",
    "issued_per_s",
    "over_issued",
    "over_limit",
}


def test_bench_coupons_ends_with_its_json_line() -> None:
    done = run_bench("coupons", *SHORT_RUN)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert CONTRACT_KEYS <= summary.keys()
    assert (summary["over_issued"], summary["over_limit"], summary["issuance_wrong"]) == (0, 0, 0)
    # The sold-out template has 100 units, one per member: exactly 100 successes.
    assert summary["soldout_successes"] == 100
    # Every 201 of the measured template is a coupon in the database.
    assert summary["claim_2xx"] > 0 and summary["claim_answers_match_rows"] is True
    assert (summary["issued"], summary["issuance_status"]) == (20000, "done")
    assert "(b) claim, success path (201)" in done.stdout  # the table precedes the line
