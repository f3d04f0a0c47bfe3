"""Mini-program open data: the rawData signature and encryptedData decryption.

signature = sha1(rawData + session_key) in hex; encryptedData is AES-128-CBC with
key = b64decode(session_key), iv = b64decode(iv), PKCS#7 padding, and the plaintext's
`watermark.appid` must be our own appid (else the data was made for another app).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from server.wechat.errors import WeChatDataInvalid


def signature(raw_data: str, session_key: str) -> str:
    return hashlib.sha1((raw_data + session_key).encode()).hexdigest()


def check_signature(raw_data: str, sig: str, session_key: str) -> None:
    if not hmac.compare_digest(signature(raw_data, session_key), sig.lower()):
        raise WeChatDataInvalid("the open data signature does not match")


def _b64(value: str, what: str, size: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        raise WeChatDataInvalid(f"{what} is not base64") from None
    if size is not None and len(raw) != size:
        raise WeChatDataInvalid(f"{what} must be {size} bytes")
    return raw


def decrypt(session_key: str, encrypted_data: str, iv: str, appid: str) -> dict[str, Any]:
    """Decrypt open data; raises WeChatDataInvalid unless it decrypts and is for `appid`."""
    key = _b64(session_key, "session_key", 16)
    ivb = _b64(iv, "iv", 16)
    data = _b64(encrypted_data, "encryptedData")
    if not data or len(data) % 16:
        raise WeChatDataInvalid("encryptedData has a wrong length")
    dec = Cipher(algorithms.AES(key), modes.CBC(ivb)).decryptor()
    padded = dec.update(data) + dec.finalize()
    try:
        unpad = padding.PKCS7(128).unpadder()
        plain = unpad.update(padded) + unpad.finalize()
        out = orjson.loads(plain)
    except (ValueError, orjson.JSONDecodeError):
        raise WeChatDataInvalid("encryptedData does not decrypt with this session") from None
    if not isinstance(out, dict) or (out.get("watermark") or {}).get("appid") != appid:
        raise WeChatDataInvalid("the open data was made for another app")
    return out


def encrypt(session_key: str, payload: dict[str, Any], iv: bytes) -> str:
    """The inverse of `decrypt` (what WeChat does); the sandbox uses it."""
    key = _b64(session_key, "session_key", 16)
    pad = padding.PKCS7(128).padder()
    padded = pad.update(orjson.dumps(payload)) + pad.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(enc.update(padded) + enc.finalize()).decode()


# -- message push (safe mode): what WeChat pushes to our server, e.g. update_waybill_status ----


def push_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """msg_signature = sha1 of the sorted (token, timestamp, nonce, Encrypt), hex."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


def _prp(aes_key: str) -> Any:
    from wechatpy.crypto import PrpCrypto  # its AES-256-CBC framing is WeChat's own

    return PrpCrypto(base64.b64decode(aes_key + "="))


def encrypt_push(aes_key: str, appid: str, payload: dict[str, Any]) -> str:
    """What WeChat does to a push in safe mode; the sandbox uses it."""
    return _prp(aes_key).encrypt(orjson.dumps(payload).decode(), appid).decode()


def decrypt_push(aes_key: str, appid: str, encrypt: str) -> dict[str, Any]:
    """The pushed event; raises WeChatDataInvalid unless it opens and is for `appid`."""
    try:
        plain = _prp(aes_key).decrypt(encrypt, appid)
        out = orjson.loads(plain)
    except Exception:
        raise WeChatDataInvalid("the push does not decrypt for this app") from None
    if not isinstance(out, dict):
        raise WeChatDataInvalid("the push is not an object")
    return out
