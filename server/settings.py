"""The one settings object. Every knob is an env var prefixed HAODIAN_.

With nothing set, the server runs the demo: SQLite and an embedded Redis under
the data dir, the WeChat sandbox mounted, demo data seeded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(RuntimeError):
    """A setting that stops the process from starting (the CLI prints it, no traceback)."""


class WeChatApp(BaseModel):
    """One mini-program (or official account) under the brand's Open Platform account."""

    appid: str
    secret: str
    name: str = ""


DEMO_WECHAT_APPS = [
    WeChatApp(appid="wxdemo0000000001", secret="demo-secret-main", name="好店+ main"),
    WeChatApp(appid="wxdemo0000000002", secret="demo-secret-gift", name="好店+ gift cards"),
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HAODIAN_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="postgres://user:pass@host:5432/db; unset = SQLite in data dir"
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://host:6379/0, or redis+cluster://host:port,host:port for a "
        "Redis Cluster; unset = embedded Redis in data dir",
    )
    jobs_redis_url: str | None = Field(
        default=None,
        description="single-node Redis for the job queue (arq) and the WeChat sandbox; "
        "unset = REDIS_URL (required when that is a cluster)",
    )
    data_dir: Path = Field(default=Path(".haodian"), description="demo database, Redis, secrets")
    secret_key: str | None = Field(
        default=None, description="signs tokens and codes; required outside demo mode"
    )
    demo: bool | None = Field(
        default=None, description="seed demo data and mount the sandbox; default: no DATABASE_URL"
    )
    sandbox: bool | None = Field(
        default=None, description="mount the WeChat sandbox under /_sandbox/wechat; default: demo"
    )
    public_url: str | None = Field(
        default=None, description="how WeChat reaches us (notify URLs); default http://host:port"
    )
    wechat_api_base: str | None = Field(
        default=None, description="mini-program API base; default sandbox in demo, else WeChat"
    )
    wechat_apps: list[WeChatApp] = Field(
        default_factory=list, description="JSON list of {appid, secret, name}; first is default"
    )
    wechatpay_mchid: str | None = Field(default=None, description="WeChat Pay merchant id")
    wechatpay_apiv3_key: str | None = Field(default=None, description="APIv3 key (32 bytes)")
    wechatpay_private_key: str | None = Field(
        default=None, description="merchant API private key: PEM text or a file path"
    )
    wechatpay_cert_serial_no: str | None = Field(
        default=None, description="serial number of the merchant API certificate"
    )
    wechatpay_public_key: str | None = Field(
        default=None, description="WeChat Pay public key: PEM text or a file path"
    )
    wechatpay_public_key_id: str | None = Field(default=None, description="PUB_KEY_ID_...")
    wechatpay_gateway: str | None = Field(
        default=None, description="WeChat Pay API base; default sandbox when mounted, else WeChat"
    )
    embedded_worker: bool | None = Field(
        default=None, description="serve also runs the job worker; default: demo mode"
    )
    pay_timeout_seconds: int = Field(
        default=900, description="an unpaid order is closed and its stock released after this"
    )
    payment_sweep_seconds: int = Field(
        default=30, description="how often the worker closes expired orders and queries WeChat"
    )
    payment_query_after_seconds: int = Field(
        default=60, description="query WeChat for a prepaid order with no notification after this"
    )
    log_level: str = Field(default="INFO")
    access_token_ttl: int = Field(default=900, description="seconds an access token lives")
    refresh_token_ttl: int = Field(default=30 * 86400, description="seconds a refresh token lives")
    flashsale_member_rps: int = Field(default=5, description="flash-sale grabs/s per member")
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses or networks of the proxies in front (nginx);"
        " only their X-Forwarded-For is believed",
    )
    flashsale_ip_rps: int = Field(default=5000, description="flash-sale grabs/s per address")
    flashsale_claim_idle_ms: int = Field(
        default=30000, description="stream entries idle this long are claimed from dead consumers"
    )
    bench_routes: bool = Field(
        default=False,
        description="mount the PostgreSQL-only baselines (flash-sale grab, coupon claim)",
    )
    worker_name: str | None = Field(
        default=None, description="stream consumer name of this worker; default: host name"
    )
    subscribe_templates: dict[str, str] = Field(
        default_factory=dict,
        description='JSON {"group_result": "<template id>", ...}: subscribe message templates',
    )
    groupbuy_sweep_seconds: int = Field(
        default=5, description="how often the worker settles group-buy groups past their deadline"
    )
    write_off_revoke_minutes: int = Field(
        default=10, description="minutes a store manager has to revoke a coupon write-off"
    )
    takeout_accept_minutes: float = Field(
        default=5, gt=0, description="a paid takeout order not accepted this soon is refunded"
    )
    delivery_shopid: str | None = Field(
        default=None, description="immediate-delivery (即时配送) shopid; default sandbox's"
    )
    delivery_id: str = Field(default="SANDBOX", description="the courier company's delivery_id")
    delivery_app_secret: str | None = Field(
        default=None, description="the courier company's AppSecret (delivery_sign)"
    )
    wechat_push_token: str | None = Field(
        default=None, description="message push Token (signature of callbacks)"
    )
    wechat_push_aes_key: str | None = Field(
        default=None, description="message push EncodingAESKey (43 chars, safe mode)"
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_db_url(cls, v: str | None) -> str | None:
        if v and v.startswith("postgresql://"):
            return "postgres://" + v.removeprefix("postgresql://")
        return v or None

    @property
    def is_demo(self) -> bool:
        return self.demo if self.demo is not None else self.database_url is None

    @property
    def sandbox_enabled(self) -> bool:
        return self.sandbox if self.sandbox is not None else self.is_demo

    @property
    def runs_embedded_worker(self) -> bool:
        return self.embedded_worker if self.embedded_worker is not None else self.is_demo

    @property
    def queue_redis_url(self) -> str:
        """The job queue's Redis. arq runs MULTI/WATCH over keys of different slots, which a
        cluster refuses, so the queue stays on one node (its load is small: a job per
        campaign, a cron tick a minute) while everything else may scale out."""
        from server.infra.redis import cluster_nodes, is_cluster_url

        if is_cluster_url(self.redis_url or ""):
            cluster_nodes(self.redis_url or "")  # a malformed one stops us here, clearly
        url = self.jobs_redis_url or self.redis_url or ""
        if is_cluster_url(url):
            raise SettingsError(
                "HAODIAN_REDIS_URL is a Redis Cluster: set HAODIAN_JOBS_REDIS_URL to a "
                "single-node Redis for the job queue"
            )
        return url

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite://{(self.data_dir / 'haodian.sqlite3').resolve()}"

    @property
    def uses_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @cached_property
    def secret(self) -> bytes:
        """The signing secret; in demo mode one is made and kept in the data dir."""
        if self.secret_key:
            return self.secret_key.encode()
        if not self.is_demo:
            raise SettingsError("HAODIAN_SECRET_KEY is required outside demo mode")
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()

    @property
    def apps(self) -> list[WeChatApp]:
        if self.wechat_apps:
            return self.wechat_apps
        if self.sandbox_enabled:
            return DEMO_WECHAT_APPS
        return []

    def subscribe_template(self, name: str) -> str | None:
        """The subscribe message template id for `name`; the sandbox accepts any id, so demo
        and sandbox runs get one made from the name."""
        if name in self.subscribe_templates:
            return self.subscribe_templates[name] or None
        return f"sandbox-{name}" if self.sandbox_enabled else None

    def _derived(self, purpose: str) -> str:
        return hmac.new(self.secret, purpose.encode(), hashlib.sha256).hexdigest()

    @property
    def push_token(self) -> str | None:
        """The message push Token; sandbox runs derive one from the secret."""
        if self.wechat_push_token or not self.sandbox_enabled:
            return self.wechat_push_token
        return self._derived("push-token")[:32]

    @property
    def push_aes_key(self) -> str | None:
        """The message push EncodingAESKey (43 base64 characters)."""
        if self.wechat_push_aes_key or not self.sandbox_enabled:
            return self.wechat_push_aes_key
        return base64.b64encode(bytes.fromhex(self._derived("push-aes"))).decode()[:43]

    @property
    def delivery_account(self) -> tuple[str, str] | None:
        """(shopid, AppSecret) at the courier company, or None when not configured."""
        if self.delivery_shopid and self.delivery_app_secret:
            return self.delivery_shopid, self.delivery_app_secret
        if self.sandbox_enabled:
            return "sandbox-shop", self._derived("delivery-secret")[:32]
        return None

    def public_base(self, host: str = "127.0.0.1", port: int = 8000) -> str:
        return (self.public_url or f"http://{host}:{port}").rstrip("/")

    @property
    def wechat_api_base_url(self) -> str:
        """Where the mini-program server API is: the configured base, else the sandbox when it
        is mounted, else WeChat itself."""
        if self.wechat_api_base:
            return self.wechat_api_base.rstrip("/")
        if self.sandbox_enabled:
            return self.public_base() + "/_sandbox/wechat"
        return "https://api.weixin.qq.com"

    @property
    def wechatpay_gateway_url(self) -> str:
        """Where WeChat Pay v3 is: the configured gateway, else the sandbox when it is mounted,
        else WeChat Pay itself."""
        if self.wechatpay_gateway:
            return self.wechatpay_gateway.rstrip("/")
        if self.sandbox_enabled:
            return self.public_base() + "/_sandbox/wechat/pay"
        return "https://api.mch.weixin.qq.com"

    def redacted(self) -> dict[str, Any]:
        """What is safe to print in a banner or a log line."""
        secret = {
            "secret_key",
            "wechatpay_apiv3_key",
            "wechatpay_private_key",
            "delivery_app_secret",
            "wechat_push_token",
            "wechat_push_aes_key",
        }
        out = self.model_dump(exclude={*secret, "wechat_apps"})
        out["wechat_apps"] = [a.appid for a in self.apps]
        return out
