"""Order lifecycle hooks: what each scenario does inside the transaction that moves its order.

Orders and payments know nothing of scenarios. A scenario registers, by order status and
kind, a hook that runs in the very transaction that moves the order there:

    @lifecycle.on(OrderStatus.PAID, kinds=[OrderKind.GROUPBUY])
    async def _count_seat(move: Move) -> None: ...

`paid` (count a seat, issue cards, mark coupons used), `cancelled` (give back what an
unpaid order held), `refunding` (a refund was asked for: free a seat, void a voucher; a
hook may refuse by raising), `refunded` and `completed`. Whatever need not share that
transaction — Redis counters, messages, refunds, points — goes through the outbox with
`outbox.emit(..., connection=move.conn)`, written in the same transaction and delivered
after the commit.

A payment that lands on an order already cancelled is refunded, unless the order's kind
has a `revive` hook that takes back what the order needs (a group-buy seat, if one is
free) and so lets the payment count.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from server.orders.models import Order, OrderKind, OrderStatus


@dataclass
class Move:
    """One order moving from one status to another, inside `conn`'s transaction."""

    order: Order  # as it is after the move
    previous: OrderStatus
    to: OrderStatus
    actor: str
    reason: str
    conn: Any


Hook = Callable[[Move], Awaitable[None]]
# A revive hook answers whether it took back what the cancelled order needs (inside conn).
Revive = Callable[[Order, Any], Awaitable[bool]]

# A scenario whose orders are written after the answer (a stream the worker reads) writes one
# on demand when the shopper asks for it first; answers whether the order exists now.
Pending = Callable[[str, Any], Awaitable[bool]]

# What a scenario adds to the order as its shopper sees it: a field of OrderOut.
View = Callable[[Order], Awaitable[Any]]

_hooks: list[tuple[OrderStatus, frozenset[OrderKind] | None, Hook]] = []
_views: dict[OrderKind, tuple[str, View]] = {}
_revivers: dict[OrderKind, Revive] = {}
_pending: dict[str, Pending] = {}

# Modules that register hooks; imported before the first move, so every process (API
# worker, job worker, CLI) runs the same hooks whatever it imported so far.
HOOK_MODULES: list[str] = [
    "server.orders.pickup",
    "server.coupons.service",
    "server.flashsale.service",
    "server.groupbuy.outcomes",
    "server.payments.tenders",
    "server.giftcards.service",
    "server.membership.service",
    "server.membership.stored_value",
    "server.membership.cards",
    "server.takeout.service",
]


def _load() -> None:
    for name in HOOK_MODULES:
        importlib.import_module(name)


def on(to: OrderStatus, kinds: Iterable[OrderKind] | None = None) -> Callable[[Hook], Hook]:
    """Run the decorated hook when an order (of one of `kinds`, or of any kind) moves to `to`."""
    wanted = frozenset(kinds) if kinds is not None else None

    def wrap(hook: Hook) -> Hook:
        if all(h is not hook or t != to for t, _, h in _hooks):
            _hooks.append((to, wanted, hook))
        return hook

    return wrap


def revive(kind: OrderKind) -> Callable[[Revive], Revive]:
    def wrap(fn: Revive) -> Revive:
        _revivers[kind] = fn
        return fn

    return wrap


def view(kind: OrderKind, field: str) -> Callable[[View], View]:
    """Register what orders of `kind` show in OrderOut's `field` (e.g. takeout's timeline)."""

    def wrap(fn: View) -> View:
        _views[kind] = (field, fn)
        return fn

    return wrap


async def extra_view(order: Order) -> dict[str, Any]:
    _load()
    entry = _views.get(OrderKind(order.kind))
    if entry is None:
        return {}
    return {entry[0]: await entry[1](order)}


def pending_orders(prefix: str) -> Callable[[Pending], Pending]:
    """Register the writer of not-yet-written orders whose numbers start with `prefix`."""

    def wrap(fn: Pending) -> Pending:
        _pending[prefix] = fn
        return fn

    return wrap


async def write_pending(order_no: str, redis: Any) -> bool:
    _load()
    for prefix, fn in _pending.items():
        if order_no.startswith(prefix):
            return await fn(order_no, redis)
    return False


async def run(move: Move) -> None:
    _load()
    kind = OrderKind(move.order.kind)
    for to, kinds, hook in list(_hooks):
        if to == move.to and (kinds is None or kind in kinds):
            await hook(move)


async def try_revive(order: Order, conn: Any) -> bool:
    _load()
    fn = _revivers.get(OrderKind(order.kind))
    return bool(fn and await fn(order, conn))
