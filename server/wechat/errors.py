"""WeChat errors as typed exceptions, each one an AppError a caller can act on.

WeChat answers HTTP 200 with `{"errcode": N, "errmsg": "..."}`; `raise_for_errcode`
turns N into one of these classes so routes never see raw errcodes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from server.infra.errors import AppError


class WeChatError(AppError):
    """Any failure talking to WeChat that has no more specific class."""

    status = 502
    code = "WECHAT_ERROR"
    errcodes: ClassVar[tuple[int, ...]] = ()

    def __init__(self, message: str, *, errcode: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errcode = errcode


class WeChatCodeInvalid(WeChatError):
    """The login or phone code is unknown, expired or already used."""

    status = 401
    code = "WECHAT_CODE_INVALID"
    errcodes = (40029, 40163)


class WeChatBusy(WeChatError):
    """WeChat said "system busy" (-1): try again shortly."""

    status = 503
    code = "WECHAT_BUSY"
    errcodes = (-1,)
    retry_after = 2


class WeChatRateLimited(WeChatError):
    """WeChat's frequency limit (45011: 100 logins a minute per user)."""

    status = 429
    code = "WECHAT_RATE_LIMITED"
    errcodes = (45011, 45009)
    retry_after = 60


class WeChatUserRisky(WeChatError):
    """WeChat flagged the user as high-risk (40226): the login is refused."""

    status = 403
    code = "WECHAT_USER_BLOCKED"
    errcodes = (40226,)


class WeChatTokenInvalid(WeChatError):
    """Our access token was refused (40001 / 40014 / 42001); the client refreshes once."""

    status = 503
    code = "WECHAT_TOKEN_INVALID"
    errcodes = (40001, 40014, 42001)


class WeChatSubscribeRefused(WeChatError):
    """The user refused the subscription, or has no send left (43101)."""

    status = 409
    code = "WECHAT_SUBSCRIBE_REFUSED"
    errcodes = (43101,)


class WeChatBadRequest(WeChatError):
    """WeChat rejected what we sent (bad page, scene, template, data)."""

    status = 422
    code = "WECHAT_BAD_REQUEST"
    errcodes = (41030, 40169, 47003, 40037, 40097, 85400, 40212)


class WeChatUnavailable(WeChatError):
    """WeChat could not be reached (network, timeout, a non-JSON answer)."""

    status = 503
    code = "WECHAT_UNAVAILABLE"
    retry_after = 5


class WeChatDataInvalid(AppError):
    """Open data that fails its signature, decryption or watermark check."""

    status = 400
    code = "WECHAT_DATA_INVALID"


_BY_ERRCODE: dict[int, type[WeChatError]] = {
    errcode: cls
    for cls in (
        WeChatCodeInvalid,
        WeChatBusy,
        WeChatRateLimited,
        WeChatUserRisky,
        WeChatTokenInvalid,
        WeChatSubscribeRefused,
        WeChatBadRequest,
    )
    for errcode in cls.errcodes
}


def error_for(errcode: int, errmsg: str, api: str) -> WeChatError:
    cls = _BY_ERRCODE.get(errcode, WeChatError)
    headers = {}
    retry = getattr(cls, "retry_after", None)
    if retry:
        headers["Retry-After"] = str(retry)
    # errmsg comes from WeChat and never carries the secret or a session key.
    return cls(f"WeChat {api} failed: {errcode} {errmsg}"[:300], errcode=errcode, headers=headers)


def raise_for_errcode(data: dict[str, Any], api: str) -> None:
    errcode = data.get("errcode") or 0
    if errcode != 0:
        raise error_for(int(errcode), str(data.get("errmsg", "")), api)
