"""Background jobs of the coupon domain (run by `haodian worker`)."""

from __future__ import annotations

import logging
from typing import Any

from arq.worker import Retry

from server.coupons import issuance
from server.infra.errors import AppError

log = logging.getLogger("haodian.coupons")


async def issue_coupons(ctx: dict[str, Any], issuance_id: int) -> dict[str, Any]:
    """Issue a campaign from its saved position on (resumable, never twice per member).

    A failure that is not a business rule (database or Redis unreachable, too many
    connections) is retried with back-off: the run is idempotent, and a campaign left
    'pending' until an operator notices helps nobody."""
    try:
        i = await issuance.run_issuance(ctx["scripts"], issuance_id)
    except AppError:
        raise
    except Exception as exc:
        log.warning(
            "issuance failed; retrying",
            extra={"issuance": issuance_id, "error": type(exc).__name__},
        )
        raise Retry(defer=5 * ctx.get("job_try", 1)) from exc
    log.info("issuance ran", extra={"issuance": i.id, "status": i.status, "issued": i.issued})
    return issuance.issuance_out(i)


functions = [issue_coupons]
