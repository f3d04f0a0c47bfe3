"""A local fake of the WeChat mini-program API and WeChat Pay v3, over real HTTP.

Its state lives in Redis (keys prefixed `sandbox:`), so every worker of a
multi-worker server sees the same users, codes and transactions.
"""

from __future__ import annotations

import importlib

from sanic import Blueprint

# Each module exposes a blueprint `bp` mounted under /_sandbox/wechat.
SANDBOX_MODULES: list[str] = [
    "server.wechat.sandbox.routes",
    "server.wechat.sandbox.phone_routes",
    "server.wechat.sandbox.pay_routes",
    "server.wechat.sandbox.delivery_routes",
]


def blueprints() -> list[Blueprint]:
    return [importlib.import_module(m).bp for m in SANDBOX_MODULES]
