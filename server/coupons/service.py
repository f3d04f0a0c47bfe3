"""The coupon domain's face to the other domains: what orders, group-buy, membership and
takeout call. Each name lives in the module of its concern; inside the domain, import from
those modules directly.

- `templates`  what a coupon is worth, where and for whom (operators)
- `stock`      a template's units in Redis: the next unit number, the free list, warm-up
- `claims`     the coupon centre and the claim (Redis decides, one grouped INSERT keeps it)
- `wallet`     the member's coupons, and those a store's clerk could take now
- `codes`      live write-off codes (QR and typed digits)
- `write_offs` a clerk takes a coupon at the counter; a manager revokes
- `pricing`    coupons on online orders: rules, locks, the lifecycle hooks
- `grants`     coupons another domain gives for one fact (vouchers, benefits, rewards)
- `issuance`   campaigns to a member list or a segment, in big resumable batches
- `stats`      how a template did
"""

from __future__ import annotations

from server.coupons.errors import AlreadyUsed, LimitReached, SoldOut, StoreNotAllowed
from server.coupons.grants import count_void, create_voucher_template, grant_coupon, void_coupon
from server.coupons.pricing import (
    CouponLock,
    PricedLine,
    coupons_for_order,
    give_back_coupons_of_order,
    lock_coupons_for_order,
    quote_coupons,
    template_discount,
)
from server.coupons.stats import stats
from server.coupons.templates import value_text, yuan
from server.coupons.wallet import usable_in_store
from server.coupons.write_offs import member_display

__all__ = [
    "AlreadyUsed",
    "CouponLock",
    "LimitReached",
    "PricedLine",
    "SoldOut",
    "StoreNotAllowed",
    "count_void",
    "coupons_for_order",
    "create_voucher_template",
    "give_back_coupons_of_order",
    "grant_coupon",
    "lock_coupons_for_order",
    "member_display",
    "quote_coupons",
    "stats",
    "template_discount",
    "usable_in_store",
    "value_text",
    "void_coupon",
    "yuan",
]
