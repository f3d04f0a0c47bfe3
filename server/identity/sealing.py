"""Secrets at rest: session keys and phone numbers, sealed with AES-256-GCM.

Each purpose has its own key, derived from the server secret with HKDF-SHA256
(info = purpose), so a leaked phone column cannot open session keys and vice versa.
Phone look-ups use a keyed hash (HMAC-SHA256), never the clear number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from server.settings import Settings

_VERSION = "v1"


@lru_cache(maxsize=16)
def _key(secret: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"haodian-sealing", info=purpose.encode()
    ).derive(secret)


def seal(settings: Settings, purpose: str, plain: str) -> str:
    nonce = os.urandom(12)
    ct = AESGCM(_key(settings.secret, purpose)).encrypt(nonce, plain.encode(), purpose.encode())
    return f"{_VERSION}:" + base64.urlsafe_b64encode(nonce + ct).decode()


def unseal(settings: Settings, purpose: str, sealed: str) -> str | None:
    """The clear text, or None when it cannot be opened (another secret, tampered)."""
    version, _, body = sealed.partition(":")
    if version != _VERSION or not body:
        return None
    try:
        raw = base64.urlsafe_b64decode(body)
        plain = AESGCM(_key(settings.secret, purpose)).decrypt(raw[:12], raw[12:], purpose.encode())
    except (InvalidTag, ValueError):
        return None
    return plain.decode()


def lookup_hash(settings: Settings, purpose: str, value: str) -> str:
    return hmac.new(
        _key(settings.secret, purpose + ":hash"), value.encode(), hashlib.sha256
    ).hexdigest()


def mask_phone(phone: str) -> str:
    """138****5678 (mainland numbers); other lengths keep the first 3 and last 2-4 digits."""
    if len(phone) >= 11:
        return phone[:3] + "****" + phone[-4:]
    if len(phone) >= 7:
        return phone[:3] + "****" + phone[-2:]
    return "****"
