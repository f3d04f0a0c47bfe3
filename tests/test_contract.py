"""The served OpenAPI document as outside tools read it: a validator, and schemathesis
fuzzing the running server as a member, a clerk and an operator."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from server.settings import Settings
from tests.conftest import ServerProcess, error_code
from tests.test_coupons import new_member, new_staff, new_store, operator_headers

METHODS = {"get", "put", "post", "delete", "patch"}


async def _document(api: httpx.AsyncClient) -> dict[str, Any]:
    r = await api.get("/docs/openapi.json")
    assert r.status_code == 200
    return r.json()


async def test_the_document_validates_and_every_reference_resolves(api: httpx.AsyncClient) -> None:
    doc = await _document(api)
    assert doc["openapi"] == "3.1.0"
    errors = [str(e)[:300] for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []
    text = json.dumps(doc)
    refs = set(re.findall(r'"\$ref": "([^"]+)"', text))
    schemas = doc["components"]["schemas"]
    unresolved = [r for r in refs if r.removeprefix("#/components/schemas/") not in schemas]
    assert unresolved == [] and "#/$defs/" not in text and '"nullable"' not in text


async def test_every_operation_documents_its_answer_and_its_errors(api: httpx.AsyncClient) -> None:
    doc = await _document(api)
    missing = []
    for path, item in doc["paths"].items():
        assert not path.startswith(("/_sandbox", "/_bench")), path
        for method, op in item.items():
            if method not in METHODS:
                continue
            statuses = op["responses"]
            if not any(s.startswith("2") for s in statuses):
                missing.append(f"{method} {path}: no success answer")
            err = statuses.get("4XX", {}).get("content", {}).get("application/json", {})
            if err.get("schema") != {"$ref": "#/components/schemas/ErrorOut"}:
                missing.append(f"{method} {path}: no error envelope")
    assert missing == []
    order = doc["paths"]["/api/v1/orders"]["post"]
    assert order["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("In")
    param = doc["paths"]["/api/v1/products/{product_id}"]["get"]["parameters"][0]
    assert param["schema"] == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/products/14208075866212212736",  # beyond 64 bits
        "/api/v1/products/9223372036854775808",  # 2^63: one past the database's ids
        "/api/v1/products/-1",
        "/api/v1/orders/%E4%B8%AD%E6%96%87",  # non-ASCII order number
        "/api/v1/orders/ab%00c",  # a NUL PostgreSQL refuses in text
        "/api/v1/groups/%F0%9F%8E%89",
        "/api/v1/gifts/" + "A" * 33,
    ],
)
async def test_a_path_outside_what_ids_and_numbers_can_be_is_a_404(
    api: httpx.AsyncClient, path: str
) -> None:
    r = await api.get(path)
    assert r.status_code == 404 and error_code(r) == "NOT_FOUND"


async def test_the_largest_id_is_looked_up_and_not_found(api: httpx.AsyncClient) -> None:
    r = await api.get(f"/api/v1/products/{2**63 - 1}")
    assert r.status_code == 404 and error_code(r) == "PRODUCT_NOT_FOUND", r.text


async def test_text_the_database_cannot_keep_is_a_422(
    api: httpx.AsyncClient, database: Settings
) -> None:
    """A NUL in a body or a query (what schemathesis sent first) would fail in PostgreSQL."""
    op = await operator_headers(database)
    body = b'{"name": "tofu\\u0000lovers"}'
    r = await api.post(
        "/api/v1/admin/categories", content=body, headers=op | {"content-type": "application/json"}
    )
    assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR", r.text
    r = await api.get("/api/v1/admin/products", params={"q": "a\x00b"}, headers=op)
    assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR", r.text
    r = await api.get("/api/v1/admin/products?q=%ED%A0%80", headers=op)  # a lone surrogate
    assert r.status_code < 500, r.text


async def test_numbers_beyond_their_columns_are_a_422(
    api: httpx.AsyncClient, database: Settings
) -> None:
    """What schemathesis found: a product's sort order beyond 32 bits (bounded in the schema
    now), and any id beyond 64 bits that no schema bounds (refused by the database layer,
    answered as a 422 and nothing written)."""
    op = await operator_headers(database)
    product = {"category_id": 1, "name": "tofu lovers", "sort": 2**38}
    r = await api.post("/api/v1/admin/products", json=product, headers=op)
    assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR", r.text
    sku = {"product_id": 2**70, "name": "200 g", "price_fen": 990}
    r = await api.post("/api/v1/admin/skus", json=sku, headers=op)
    assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR", r.text


# -- fuzzing ---------------------------------------------------------------------------------------

# The event stream never ends (wrk-like tools wait for it forever); logging out mid-run would
# make every later operation a 401.
EXCLUDED = r"(/stream$|/logout$)"
EXAMPLES = 6  # per operation and role: ~130 operations x 3 roles in a few minutes


async def _role_headers(settings: Settings) -> dict[str, dict[str, str]]:
    _, member = await new_member(settings)
    store = await new_store()
    _, clerk = await new_staff(settings, [store])
    return {"member": member, "clerk": clerk, "operator": await operator_headers(settings)}


@pytest.mark.last
async def test_schemathesis_finds_no_5xx_and_no_answer_off_its_schema(
    server: ServerProcess, database: Settings, tmp_path: Path
) -> None:
    """Runs after the other tests (it changes what an operator may change)."""
    roles = await _role_headers(database)
    failures = []
    for role, headers in roles.items():
        report = tmp_path / f"{role}.txt"
        cmd = [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{server.base_url}/docs/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "20261203",
            "--generation-deterministic",
            "--no-shrink",
            "--request-timeout",
            "20",
            "--exclude-path-regex",
            EXCLUDED,
            "-H",
            f"Authorization: {headers['Authorization']}",
        ]
        done = await asyncio.to_thread(
            # In tmp_path: schemathesis keeps a cache in its working directory.
            subprocess.run,
            cmd,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
        report.write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            failures.append(f"--- as {role}:\n{done.stdout[-6000:]}")
    assert failures == [], "\n".join(failures)
