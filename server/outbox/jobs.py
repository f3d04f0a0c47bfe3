"""`haodian worker` delivers the outbox: a loop that polls for due events."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.outbox import service

log = logging.getLogger("haodian.outbox")

IDLE_POLL_S = 0.1  # an idle worker looks again this soon: effects follow commits closely


async def run_outbox(ctx: dict[str, Any]) -> None:
    env = service.Env(ctx["settings"], ctx["redis_client"], ctx["scripts"])
    try:
        while True:
            try:
                done = await service.deliver_due(env)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox pass failed; retrying")
                await asyncio.sleep(1)
                continue
            if not done:
                await asyncio.sleep(IDLE_POLL_S)
    finally:
        await env.aclose()


consumers = [run_outbox]
functions: list[Any] = []
