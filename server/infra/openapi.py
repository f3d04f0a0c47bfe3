"""The served OpenAPI document: OpenAPI 3.1, so pydantic's JSON Schema (2020-12) is the
schema language as it is, every `$ref` under `#/components`, every operation with its error
envelope, and path parameters as the router accepts them.

sanic-ext builds the document from the routes (`server.infra.http` hands it pydantic models
as components) but declares 3.0 and leaves some schemas in 3.0's dialect (`nullable`) and
some `$defs` where a reference from the document root cannot reach them; `fixed` puts that
right once per worker, and the document is served from then on as built. Callers' code
generators, schemathesis and the mini-program's contract test read this document.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
from pydantic import BaseModel, Field
from sanic import HTTPResponse, Request, Sanic

MAX_ID = 2**63 - 1  # the database's bigint: a larger id names nothing
REF_PATTERN = r"^[0-9A-Za-z_-]{1,32}$"  # order, group and gift numbers, share scenes
_REF = re.compile(REF_PATTERN)
_NOT_API = ("/_sandbox/", "/_bench/")
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def row_id(text: str) -> int:
    """The router's `int`: a database id, 0..2^63-1 (anything else is no route: a 404)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or int(text) > MAX_ID:
        raise ValueError("not an id the database can hold")
    return int(text)


def ref_text(text: str) -> str:
    """The router's `ref`: what our numbers and scenes are made of (letters, digits, - and _,
    at most 32: an order number is WeChat Pay's out_trade_no)."""
    if not _REF.match(text):
        raise ValueError("not a reference")
    return text


def register_path_types(app: Sanic) -> None:
    """Before any route is added: `<x:int>` as a database id, `<x:ref>` as one of our
    numbers. A path segment outside them matches no route, so it is a 404 in the error
    envelope, never a query that fails in the database."""
    app.router.register_pattern("int", row_id, r"^\d{1,19}$")
    app.router.register_pattern("ref", ref_text, REF_PATTERN)


class OkOut(BaseModel):
    ok: bool = True


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str = Field(description="ok | degraded")
    database: str = Field(description="ok | down: <why>")
    redis: str


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, for programs: e.g. COUPON_SOLD_OUT")
    message: str = Field(description="for people")
    request_id: str | None = None
    details: Any = None


class ErrorOut(BaseModel):
    """Every 4xx and 5xx answer."""

    error: ErrorDetail


_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
_ERRORS = {
    "4XX": "refused: the error envelope says why (code, message)",
    "503": "a backing service cannot be reached; retry after Retry-After",
}


def fixed(raw: dict[str, Any], path_types: dict[tuple[str, str], str]) -> dict[str, Any]:
    """The document sanic-ext built, made a valid OpenAPI 3.1 document.

    `path_types` maps (OpenAPI path, parameter) to the router's label (int, ref, str)."""
    doc = copy.deepcopy(raw)
    doc["openapi"] = "3.1.0"
    # The WeChat sandbox (a stand-in for WeChat's servers, mounted in the demo and the tests)
    # and the benches' baseline routes are not the API our callers use.
    doc["paths"] = {
        p: item for p, item in doc.get("paths", {}).items() if not p.startswith(_NOT_API)
    }
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(_models_schemas(ErrorOut))
    _lift_defs(doc, schemas)
    _to_31(doc)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in _METHODS:
                continue
            responses = op.setdefault("responses", {})
            for status, text in _ERRORS.items():
                responses.setdefault(
                    status,
                    {"description": text, "content": {"application/json": {"schema": _ERROR_REF}}},
                )
            for param in op.get("parameters", []):
                if param.get("in") == "path":
                    param["schema"] = _path_schema(path_types.get((path, param["name"]), "str"))
                    param["required"] = True
    _unique_operation_ids(doc)
    return doc


def _unique_operation_ids(doc: dict[str, Any]) -> None:
    """One handler serving two methods (PATCH and PUT, for wx.request has no PATCH) gets one
    operationId from sanic-ext; the spec wants them unique, so each such one names its method."""
    ops = [
        (method, op)
        for item in doc.get("paths", {}).values()
        for method, op in item.items()
        if method in _METHODS and "operationId" in op
    ]
    seen: dict[str, int] = {}
    for _, op in ops:
        seen[op["operationId"]] = seen.get(op["operationId"], 0) + 1
    for method, op in ops:
        if seen[op["operationId"]] > 1:
            op["operationId"] = f"{op['operationId']}_{method}"


def _models_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    return top.get("$defs", {})


def _path_schema(label: str) -> dict[str, Any]:
    if label == "int":
        return {"type": "integer", "minimum": 0, "maximum": MAX_ID}
    if label == "ref":
        return {"type": "string", "pattern": REF_PATTERN}
    return {"type": "string"}


def _lift_defs(node: Any, schemas: dict[str, Any]) -> None:
    """`$defs` nested in a schema move to components; their references follow."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        if isinstance(defs, dict):
            for name, schema in defs.items():
                schemas.setdefault(name, schema)
                _lift_defs(schema, schemas)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref[len("#/$defs/") :]
        for value in list(node.values()):
            _lift_defs(value, schemas)
    elif isinstance(node, list):
        for value in node:
            _lift_defs(value, schemas)


def _to_31(node: Any) -> None:
    """3.0's `nullable` as 3.1 says it; a `type` beside an `anyOf` (sanic-ext's addition,
    which would refuse the null the anyOf allows) dropped."""
    if isinstance(node, dict):
        if "anyOf" in node and isinstance(node.get("type"), str):
            node.pop("type")
        if node.pop("nullable", False) and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        for value in node.values():
            _to_31(value)
    elif isinstance(node, list):
        for value in node:
            _to_31(value)


_SEGMENT = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?>")


def path_types(app: Sanic) -> dict[tuple[str, str], str]:
    """(OpenAPI path, parameter) -> the router's label, from the routes themselves."""
    found: dict[tuple[str, str], str] = {}
    for route in app.router.routes:
        uri = "/" + route.path.lstrip("/")
        params = _SEGMENT.findall(uri)
        path = _SEGMENT.sub(lambda m: "{" + m.group(1) + "}", uri)
        for name, label in params:
            found[(path, name)] = label or "str"
    return found


def serve_fixed_document(app: Sanic) -> None:
    """Answer the document's URL with `fixed` of sanic-ext's, built on first request."""
    from sanic_ext.extensions.openapi.builders import SpecificationBuilder

    built: list[bytes] = []

    async def document(request: Request) -> HTTPResponse:
        if not built:
            spec = SpecificationBuilder().build(app).serialize()
            raw = orjson.loads(orjson.dumps(spec, option=orjson.OPT_NON_STR_KEYS))
            built.append(orjson.dumps(fixed(raw, path_types(app))))
        return HTTPResponse(built[0], content_type="application/json")

    target = app.config.OAS_URL_PREFIX.rstrip("/") + app.config.OAS_URI_TO_JSON
    for route in app.router.routes:
        if "/" + route.path.lstrip("/") == target:
            route.handler = document
