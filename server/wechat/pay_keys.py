"""WeChat Pay v3 key material: from the settings, or made once for the demo and the sandbox.

In production every HAODIAN_WECHATPAY_* value is configured. With the sandbox mounted
(demo mode, or HAODIAN_SANDBOX=1) whatever is missing is made once and kept in the data
dir (files 0600), so our adapter and the sandbox share it:

- `wechatpay_merchant_key.pem`  merchant API key pair: we sign requests with the private
  half, the sandbox verifies them with the public half;
- `wechatpay_platform_key.pem`  the "WeChat Pay public key" pair: the sandbox signs answers
  and notifications with the private half, we verify with the public half;
- `wechatpay_apiv3_key`         the 32-byte APIv3 key (AES-256-GCM of notifications).

Several worker processes may start at once: each file is written to a temporary name and
hard-linked into place, so the first writer wins and everybody reads the winner's file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import string
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.infra.errors import Unavailable
from server.settings import Settings

DEMO_MCHID = "1900000001"
MERCHANT_KEY_FILE = "wechatpay_merchant_key.pem"
PLATFORM_KEY_FILE = "wechatpay_platform_key.pem"
APIV3_KEY_FILE = "wechatpay_apiv3_key"


class PayNotConfigured(Unavailable):
    status = 503
    code = "WECHATPAY_NOT_CONFIGURED"


@dataclass(frozen=True)
class PayConfig:
    mchid: str
    apiv3_key: str
    merchant_private_key: str  # PKCS#8 PEM (what wechatpayv3 loads)
    merchant_public_key: str  # SubjectPublicKeyInfo PEM (the sandbox verifies with it)
    cert_serial_no: str
    public_key: str  # WeChat Pay public key, SubjectPublicKeyInfo PEM
    public_key_id: str  # PUB_KEY_ID_...
    gateway: str
    platform_private_key: str | None = None  # only for the sandbox: signs as WeChat Pay

    def __repr__(self) -> str:  # never print keys
        return f"PayConfig(mchid={self.mchid!r}, gateway={self.gateway!r})"


def _write_once(path: Path, content: bytes) -> bytes:
    """Create `path` with `content` unless it exists; return what the file holds."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # atomic, fails when another process was first
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes()


def _new_rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_or_path(value: str) -> bytes:
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    path = Path(text).expanduser()
    if not path.is_file():
        raise PayNotConfigured(f"WeChat Pay key file not found: {path}")
    return path.read_bytes()


def _private_pkcs8(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PayNotConfigured("the WeChat Pay merchant key must be an RSA key")
    return key


def _pkcs8(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _spki(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _fingerprint(public_pem: str) -> str:
    return hashlib.sha1(public_pem.encode()).hexdigest().upper()


_cache: dict[tuple[object, ...], PayConfig] = {}
_lock = threading.Lock()


def pay_config(settings: Settings) -> PayConfig:
    """The key material for `settings` (cached per process)."""
    cache_key = (
        settings.wechatpay_mchid,
        settings.wechatpay_apiv3_key,
        settings.wechatpay_private_key,
        settings.wechatpay_cert_serial_no,
        settings.wechatpay_public_key,
        settings.wechatpay_public_key_id,
        settings.wechatpay_gateway_url,
        settings.sandbox_enabled,
        str(settings.data_dir.resolve()),
    )
    with _lock:
        cfg = _cache.get(cache_key)
        if cfg is None:
            cfg = _cache[cache_key] = _build(settings)
        return cfg


def _build(settings: Settings) -> PayConfig:
    generate = settings.sandbox_enabled
    data_dir = settings.data_dir
    missing = [
        name
        for name in ("mchid", "apiv3_key", "private_key", "public_key")
        if not getattr(settings, f"wechatpay_{name}")
    ]
    if missing and not generate:
        raise PayNotConfigured(
            "WeChat Pay is not configured: set "
            + ", ".join(f"HAODIAN_WECHATPAY_{m.upper()}" for m in missing)
        )

    if settings.wechatpay_private_key:
        merchant = _private_pkcs8(_pem_or_path(settings.wechatpay_private_key))
    else:
        merchant = _private_pkcs8(_write_once(data_dir / MERCHANT_KEY_FILE, _new_rsa_pem()))
    merchant_public = _spki(merchant.public_key())

    # The sandbox always signs with the generated platform key; the adapter verifies with
    # the configured WeChat Pay public key when there is one (then the sandbox cannot pass).
    platform_private: str | None = None
    if generate:
        platform = _private_pkcs8(_write_once(data_dir / PLATFORM_KEY_FILE, _new_rsa_pem()))
        platform_private = _pkcs8(platform)
        generated_public = _spki(platform.public_key())
        generated_id = "PUB_KEY_ID_" + _fingerprint(generated_public)[:32]
    if settings.wechatpay_public_key:
        pub = serialization.load_pem_public_key(_pem_or_path(settings.wechatpay_public_key))
        if not isinstance(pub, rsa.RSAPublicKey):
            raise PayNotConfigured("the WeChat Pay public key must be an RSA key")
        public_key = _spki(pub)
        public_key_id = settings.wechatpay_public_key_id or ""
        if not public_key_id.startswith("PUB_KEY_ID_"):
            raise PayNotConfigured("HAODIAN_WECHATPAY_PUBLIC_KEY_ID (PUB_KEY_ID_...) is required")
    else:
        public_key = generated_public
        public_key_id = settings.wechatpay_public_key_id or generated_id

    if settings.wechatpay_apiv3_key:
        apiv3_key = settings.wechatpay_apiv3_key
    else:
        alphabet = string.ascii_letters + string.digits
        apiv3_key = (
            _write_once(
                data_dir / APIV3_KEY_FILE,
                "".join(secrets.choice(alphabet) for _ in range(32)).encode(),
            )
            .decode()
            .strip()
        )
    if len(apiv3_key.encode()) != 32:
        raise PayNotConfigured("HAODIAN_WECHATPAY_APIV3_KEY must be 32 bytes")

    serial = settings.wechatpay_cert_serial_no
    if not serial:
        if not generate:
            raise PayNotConfigured("HAODIAN_WECHATPAY_CERT_SERIAL_NO is required")
        serial = _fingerprint(merchant_public)
    return PayConfig(
        mchid=settings.wechatpay_mchid or DEMO_MCHID,
        apiv3_key=apiv3_key,
        merchant_private_key=_pkcs8(merchant),
        merchant_public_key=merchant_public,
        cert_serial_no=serial,
        public_key=public_key,
        public_key_id=public_key_id,
        gateway=settings.wechatpay_gateway_url,
        platform_private_key=platform_private,
    )
