"""`haodian reindex stores`: rebuild the store locator's Redis GEO index from the database."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from server import cli
from server.settings import Settings


def _parser(sub: Any) -> None:
    p = sub.add_parser(
        "reindex",
        help="rebuild a Redis index from the database (stores: the locator's GEO index)",
        description="Builds the index into temporary keys and swaps it in atomically; "
        "nearby queries keep working while it runs.",
    )
    p.add_argument("index", choices=["stores"], help="which index")


cli._EXTRA_PARSERS.append(_parser)


@cli.command("reindex")
def cmd_reindex(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from server.stores import index
    from server.stores.models import Store

    settings = Settings()

    async def run(redis: Any) -> int:
        total = await Store.all().count()
        with tqdm(total=total, desc="reindex stores", unit="store") as bar:
            return await index.rebuild(redis, progress=bar.update)

    listed = asyncio.run(cli._with_runtime(settings, run))
    print(f"indexed {listed} open stores into {index.GEO_KEY}")
    return 0
