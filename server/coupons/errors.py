"""The coupon domain's refusals (all of them `infra.errors` kinds, answered as 4xx)."""

from __future__ import annotations

from server.infra import livecodes
from server.infra.errors import Conflict, Forbidden


class SoldOut(Conflict):
    code = "COUPON_SOLD_OUT"


class LimitReached(Conflict):
    code = "LIMIT_REACHED"


class AlreadyUsed(Conflict):
    code = "COUPON_ALREADY_USED"


class StoreNotAllowed(Forbidden):
    code = "STORE_NOT_ALLOWED"


CodeInvalid = livecodes.CodeInvalid
CodeExpired = livecodes.CodeExpired
