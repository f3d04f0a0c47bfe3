"""`haodian flashsale reconcile SALE` and `haodian flashsale warm SALE`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from server import cli
from server.settings import Settings


def _parser(sub: Any) -> None:
    p = sub.add_parser("flashsale", help="flash-sale maintenance (reconcile Redis with the DB)")
    fsub = p.add_subparsers(dest="flashsale_command", required=True, metavar="ACTION")
    r = fsub.add_parser(
        "reconcile",
        help="compare a sale's Redis stock and buyers with PostgreSQL and repair Redis",
        description="Prints each change it made; prints 'in step' when there was nothing to do.",
    )
    r.add_argument("sale", type=int, help="flash sale id")
    w = fsub.add_parser("warm", help="load a sale into Redis if its keys are missing")
    w.add_argument("sale", type=int, help="flash sale id")


cli._EXTRA_PARSERS.append(_parser)


@cli.command("flashsale")
def cmd_flashsale(args: argparse.Namespace) -> int:
    from server.flashsale import service
    from server.infra.errors import AppError
    from server.infra.redis import Scripts

    settings = Settings()

    async def run(redis: Any) -> list[str]:
        scripts = Scripts(redis)
        if args.flashsale_command == "warm":
            sale = await service.get_sale(args.sale)
            loaded = await service.warm(redis, scripts, sale)
            left = await redis.get(service.sale_keys(sale.id)["stock"])
            return [f"warmed: stock {left}" if loaded else f"already warm: stock {left}"]
        return await service.reconcile(redis, scripts, args.sale)

    try:
        lines = asyncio.run(cli._with_runtime(settings, run))
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if args.flashsale_command == "reconcile":
        print(
            f"flash sale {args.sale}: "
            + ("in step, nothing changed" if not lines else f"{len(lines)} change(s)")
        )
    for line in lines:
        print(f"  {line}")
    return 0
