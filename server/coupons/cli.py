"""`haodian coupons issue ISSUANCE`: run (or resume) a campaign issuance from the shell, with a
progress bar; what the worker's `issue_coupons` job does, for an operator who wants to watch
it or to finish one after a crash."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from server import cli
from server.settings import Settings


def _parser(sub: Any) -> None:
    p = sub.add_parser("coupons", help="coupon campaigns (run an issuance)")
    csub = p.add_subparsers(dest="coupons_command", required=True, metavar="ACTION")
    i = csub.add_parser(
        "issue",
        help="issue a campaign's coupons from where it stopped, with a progress bar",
        description=(
            "Runs the issuance batch by batch until every listed member holds its coupon or "
            "the template runs out of stock. Safe to stop (Ctrl-C, kill -9) and run again: "
            "it resumes at the last committed batch, no member gets two."
        ),
    )
    i.add_argument("issuance", type=int, help="issuance id (POST /api/v1/admin/coupon-issuances)")
    i.add_argument("--batch", type=int, default=None, help="members per batch (default 10,000)")


cli._EXTRA_PARSERS.append(_parser)


@cli.command("coupons")
def cmd_coupons(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from server.coupons import issuance
    from server.infra.errors import AppError
    from server.infra.redis import Scripts, share_scripts

    if args.batch is not None and not 1 <= args.batch <= 50_000:
        print("error: --batch must be from 1 to 50000", file=sys.stderr)
        return 2
    settings = Settings()

    async def run(redis: Any) -> dict[str, Any]:
        scripts = Scripts(redis)
        share_scripts(scripts)
        before = await issuance.get_issuance(args.issuance)
        with tqdm(
            total=before.total,
            initial=before.position,
            desc=f"issuance {before.id}",
            unit="member",
            unit_scale=True,
        ) as bar:
            done = await issuance.run_issuance(
                scripts, before.id, batch=args.batch, progress=lambda b: bar.update(b.done)
            )
        return issuance.issuance_out(done)

    try:
        out = asyncio.run(cli._with_runtime(settings, run))
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(
        f"issuance {out['id']}: {out['status']}, {out['issued']:,} issued, "
        f"{out['skipped']:,} skipped, {out['position']:,} of {out['total']:,} members"
        + (f" ({out['message']})" if out["message"] else "")
    )
    return 0 if out["status"] == "done" else 1
