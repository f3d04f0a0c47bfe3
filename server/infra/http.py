"""Thin route helpers: parse a request into a pydantic model, answer with one.

Routes stay `parse -> service -> serialise`; these helpers also put the request
and response models into the served OpenAPI document.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from sanic import HTTPResponse, Request
from sanic.response import json as sanic_json
from sanic_ext import openapi
from sanic_ext.extensions.openapi.builders import OperationStore
from sanic_ext.extensions.openapi.definitions import Component

from server.infra.errors import AppError, BadRequest, ValidationFailed
from server.infra.models import IDEMPOTENCY_KEY_MAX

M = TypeVar("M", bound=BaseModel)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj, default=_default).decode()


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def respond(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    return sanic_json(data, status=status, headers=headers, dumps=_dumps)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def _raise_validation(exc: ValidationError, where: str) -> None:
    details = validation_details(exc)
    first = details[0]
    raise ValidationFailed(
        f"invalid {where}: {first['field']}: {first['message']}", details=details
    ) from None


_NUL = "text may not contain the NUL character (\\u0000)"


def _storable(text: str) -> bool:
    """Text PostgreSQL can keep: UTF-8 (no lone surrogate from a bad escape), no NUL."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object ({} when empty); MALFORMED_JSON otherwise. Hot paths that
    skip pydantic use it directly."""
    raw = request.body or b""
    if not raw.strip():
        return {}
    if b"\\u0000" in raw:  # PostgreSQL keeps no NUL in text or jsonb: refused here, not there
        raise ValidationFailed(_NUL)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("request body is not valid JSON", code="MALFORMED_JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", code="MALFORMED_JSON")
    return data


def idempotency_key(request: Request) -> str:
    """The Idempotency-Key a stock- or money-moving POST must carry."""
    key = request.headers.get("idempotency-key", "")
    if not 0 < len(key) <= IDEMPOTENCY_KEY_MAX:
        raise BadRequest(
            f"send an Idempotency-Key header (1-{IDEMPOTENCY_KEY_MAX} characters)",
            code="IDEMPOTENCY_KEY_REQUIRED",
        )
    return key


def parse_body(request: Request, model: type[M]) -> M:
    data = json_object(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, "body")
        raise  # unreachable


def parse_query(request: Request, model: type[M]) -> M:
    data = {k: v[0] if len(v) == 1 else v for k, v in request.args.items()}
    if not all(_storable(v) for vs in request.args.values() for v in vs):
        raise ValidationFailed("query text must be UTF-8 without the NUL character")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, "query")
        raise


def wraps_documented(handler: Callable[..., Any]) -> Callable[[Callable[..., Any]], Any]:
    """functools.wraps that also carries the OpenAPI facts already recorded for `handler`."""

    def apply(inner: Callable[..., Any]) -> Callable[..., Any]:
        inner = functools.wraps(handler)(inner)
        store = OperationStore()
        if handler in store:
            store[inner] = store.pop(handler)
        return inner

    return apply


_components: dict[str, type[BaseModel]] = {}


def component(model: type[BaseModel]) -> Any:
    """The model as a named schema of the OpenAPI document. Names are the document's keys:
    two models of one name would both point at whichever came first, so that refuses."""
    known = _components.setdefault(model.__name__, model)
    if known is not model:
        raise RuntimeError(
            f"two response/request models named {model.__name__}: {known.__module__} and"
            f" {model.__module__}; name them by their domain"
        )
    return Component(model)


def body(model: type[BaseModel]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: parse the JSON body into `model` and pass it as `payload`."""

    def wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
        @wraps_documented(handler)
        async def inner(request: Request, *args: Any, **kwargs: Any) -> Any:
            kwargs["payload"] = parse_body(request, model)
            return await handler(request, *args, **kwargs)

        return openapi.body({"application/json": component(model)}, required=True)(inner)

    return wrap


def query(model: type[BaseModel]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: parse the query string into `model` and pass it as `params`."""

    def wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
        @wraps_documented(handler)
        async def inner(request: Request, *args: Any, **kwargs: Any) -> Any:
            kwargs["params"] = parse_query(request, model)
            return await handler(request, *args, **kwargs)

        for name, field in model.model_fields.items():
            inner = openapi.parameter(
                name, schema=field.annotation, location="query", required=field.is_required()
            )(inner)
        return inner

    return wrap


def trusted_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """HAODIAN_TRUSTED_PROXIES as networks; a wrong entry stops the start, saying which."""
    nets = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"HAODIAN_TRUSTED_PROXIES: {part!r} is not an address") from None
    return tuple(nets)


def _trusted(address: str, nets: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def client_address(request: Request) -> str:
    """Who sent the request, for rate limits: the peer, unless the peer is one of our proxies
    (HAODIAN_TRUSTED_PROXIES); then the nearest X-Forwarded-For hop that is not one of them.
    Anyone else's X-Forwarded-For is ignored, so a client cannot pick its own address."""
    peer = request.ip
    nets = request.app.ctx.trusted_proxies
    if not nets or not _trusted(peer, nets):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed(hops):
        if hop and not _trusted(hop, nets):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a proxy passed on garbage: the proxy is who we know
    return peer


def error_answer(request: Request, exc: AppError) -> HTTPResponse:
    """The error envelope rendered here rather than through Sanic's exception handling, which
    costs more than a hot path's whole work (a sold-out grab, a full group)."""
    rid = str(request.id)
    return HTTPResponse(
        orjson.dumps(exc.body(rid)),
        status=exc.status,
        headers={"X-Request-ID": rid, **exc.headers},
        content_type="application/json",
    )


def documents_body(model: type[BaseModel]) -> Callable[[Callable[..., Any]], Any]:
    """openapi.body without its per-request wrapper, for hot paths that parse their body
    themselves."""

    def apply(fn: Callable[..., Any]) -> Any:
        wrapped = openapi.body({"application/json": component(model)}, required=True)(fn)
        store = OperationStore()
        store[fn] = store.pop(wrapped)
        return fn

    return apply


def returns(model: type[BaseModel], status: int = 200) -> Callable[[Any], Any]:
    """Document the response model in the OpenAPI document."""
    return openapi.response(status, {"application/json": component(model)})
