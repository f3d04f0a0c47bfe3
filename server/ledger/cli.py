"""`haodian ledger check`: every account's balance = the sum of its entries = its last
entry's balance_after, and never below zero. Exit 1, naming each account, when not."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from server import cli
from server.settings import Settings


def _parser(sub: Any) -> None:
    p = sub.add_parser(
        "ledger",
        help="the one ledger (gift cards, stored value, points): check that the books add up",
        description="check: for every account, balance = sum of its entries = the last "
        "entry's balance_after, and balance >= 0. Prints each account that is wrong and "
        "exits 1; exits 0 when all hold. Reads only; safe on a live database.",
    )
    p.add_argument("action", choices=["check"], help="what to do")
    p.add_argument("--chunk", type=int, default=50_000, help="accounts per query (default 50,000)")


cli._EXTRA_PARSERS.append(_parser)


@cli.command("ledger")
def cmd_ledger(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from server.infra import db
    from server.ledger import service

    settings = Settings()

    async def run() -> tuple[int, list[service.Problem]]:
        await db.init_db(settings)
        try:
            with tqdm(desc="ledger check", unit="id", file=sys.stderr, leave=False) as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                return await service.check(chunk=max(1, args.chunk), progress=progress)
        finally:
            await db.close_db()

    checked, problems = asyncio.run(run())
    for problem in problems:
        print(problem.describe())
    if problems:
        print(f"ledger check FAILED: {len(problems)} of {checked} accounts are wrong")
        return 1
    print(f"ledger check passed: {checked} accounts, every balance = the sum of its entries")
    return 0
