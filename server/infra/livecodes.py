"""Live codes: the one mechanism for anything a clerk scans (a coupon or group-buy voucher, the
member code at the till). A code is a prefix + base32(two ids, the issue time, a 96-bit HMAC)
— QR alphanumeric mode — that lives 60 s, with a 12-digit fallback the clerk can type (kept in
Redis for the code's life). Each kind of code has its own prefix and its own HMAC key, derived
from the server secret, so a code of one kind can never pass for another."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Any

from server.infra.errors import AppError

TTL = 60  # seconds a live code lives
DIGITS_LEN = 12


class CodeInvalid(AppError):
    status = 400
    code = "CODE_INVALID"


class CodeExpired(AppError):
    status = 410
    code = "CODE_EXPIRED"


@dataclass(frozen=True)
class CodeKind:
    prefix: str  # e.g. "HD1": what the scanner sees first
    purpose: bytes  # the HMAC key's label
    what: str  # "coupon code", "member code": for messages


def _key(secret: bytes, kind: CodeKind) -> bytes:
    return hmac.new(secret, kind.purpose, hashlib.sha256).digest()


def sign(secret: bytes, kind: CodeKind, a: int, b: int, issued_at: int | None = None) -> str:
    issued_at = int(time.time()) if issued_at is None else issued_at
    payload = struct.pack(">QQI", a, b, issued_at)
    sig = hmac.new(_key(secret, kind), payload, hashlib.sha256).digest()[:12]
    return kind.prefix + base64.b32encode(payload + sig).decode().rstrip("=")


def verify(
    secret: bytes, kind: CodeKind, code: str, now: float | None = None
) -> tuple[int, int, int]:
    """(a, b, issued_at) of a genuine, live code of this kind; CODE_INVALID / CODE_EXPIRED."""
    code = code.strip().upper()
    if not code.startswith(kind.prefix):
        raise CodeInvalid(f"this is not a {kind.what}")
    body = code[len(kind.prefix) :]
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (ValueError, TypeError):
        raise CodeInvalid("the code is damaged; ask the shopper to refresh it") from None
    if len(raw) != 32:
        raise CodeInvalid("the code is damaged; ask the shopper to refresh it")
    payload, sig = raw[:20], raw[20:]
    good = hmac.new(_key(secret, kind), payload, hashlib.sha256).digest()[:12]
    if not hmac.compare_digest(sig, good):
        raise CodeInvalid("the code's signature does not match: not a code we issued")
    a, b, issued_at = struct.unpack(">QQI", payload)
    now = time.time() if now is None else now
    if issued_at > now + 5:
        raise CodeInvalid("the code is from the future")
    if now - issued_at > TTL:
        raise CodeExpired(
            f"the {kind.what} has expired (codes live {TTL} s); ask the shopper to show it live"
        )
    return a, b, issued_at


def _digits_key(digits: str) -> str:
    return f"cpd:{digits}"


async def issue(redis: Any, code: str) -> dict[str, Any]:
    """The code with its typed fallback: {"code", "digits", "expires_in"}."""
    digits = ""
    for _ in range(5):
        digits = "".join(secrets.choice("0123456789") for _ in range(DIGITS_LEN))
        if await redis.set(_digits_key(digits), code, ex=TTL, nx=True):
            break
    return {"code": code, "digits": digits, "expires_in": TTL}


async def resolve(redis: Any, text: str) -> str:
    """What was scanned or typed, as a code (typed digits looked up)."""
    text = text.strip().replace(" ", "").replace("-", "")
    if text.isdigit():
        if len(text) != DIGITS_LEN:
            raise CodeInvalid(f"a typed code has {DIGITS_LEN} digits")
        code = await redis.get(_digits_key(text))
        if code is None:
            raise CodeInvalid(f"no live code has these digits (they last {TTL} s)")
        return code
    return text
