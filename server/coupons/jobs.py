"""Background jobs of the coupon domain (run by `haodian worker`)."""

from __future__ import annotations

import logging
from typing import Any

from server.coupons import service

log = logging.getLogger("haodian.coupons")


async def issue_coupons(ctx: dict[str, Any], issuance_id: int) -> dict[str, Any]:
    """Issue a campaign from its saved position on (resumable, never twice per member)."""
    i = await service.run_issuance(ctx["scripts"], issuance_id)
    log.info("issuance ran", extra={"issuance": i.id, "status": i.status, "issued": i.issued})
    return service.issuance_out(i)


functions = [issue_coupons]
