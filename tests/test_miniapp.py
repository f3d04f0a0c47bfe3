"""The mini-program stub's own tests (`node --test` over miniapp_stub/) against a real
`haodian serve` with the demo data on PostgreSQL and Redis, its worker and the WeChat sandbox:
every scenario's flow through the stub's utils modules, the pages rendered by
miniprogram-simulate, and the stub's calls checked against the served OpenAPI document."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import (
    ROOT,
    TEST_SECRET,
    ServerProcess,
    own_database,
    own_redis_database,
    redis_env,
)

STUB = ROOT / "miniapp_stub"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own (its own database, so the demo seed runs), as the stub's developer
    runs it: demo data, the sandbox, the embedded worker."""
    work = tmp_path_factory.mktemp("miniapp")
    with own_database() as pg, own_redis_database() as redis_url:
        env = {
            "HAODIAN_DATABASE_URL": pg,
            **redis_env(redis_url),
            "HAODIAN_DATA_DIR": str(work / "data"),
            "HAODIAN_SECRET_KEY": TEST_SECRET,
            "HAODIAN_DEMO": "1",
        }
        proc = ServerProcess(["serve", "--workers", "2"], env, work / "server.log", cwd=work)
        try:
            proc.wait_ready(timeout=240)
            yield proc
        finally:
            proc.stop()


def test_the_stub_passes_its_node_tests_against_the_live_server(
    demo_server: ServerProcess,
) -> None:
    node = shutil.which("node")
    assert node, "node is not installed (Node 18 or newer)"
    assert (STUB / "node_modules" / "miniprogram-simulate").is_dir(), (
        "the stub's node packages are missing: (cd miniapp_stub && npm ci); scripts/test.sh does"
    )
    done = subprocess.run(
        [node, "--test", "--test-concurrency=1", "test/"],
        cwd=STUB,
        env={**os.environ, "HAODIAN_API": demo_server.base_url},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    tally = re.findall(r"^# (pass|fail|cancelled|skipped|todo) (\d+)$", out, re.M)
    counts = {k: int(v) for k, v in tally}
    assert done.returncode == 0 and counts.get("fail") == 0, (
        out[-8000:] + "\n--- server log:\n" + demo_server.logs()[-4000:]
    )
    assert counts.get("pass", 0) >= 15 and counts.get("skipped") == 0 and counts.get("todo") == 0


def test_every_page_the_server_links_to_is_a_page_of_the_stub() -> None:
    """Share links, subscribe messages and order updates name mini-program pages; each must
    exist in app.json with its four files."""
    import json

    pages = json.loads((STUB / "app.json").read_text())["pages"]
    for page in pages:
        for ext in ("js", "json", "wxml", "wxss"):
            assert (STUB / f"{page}.{ext}").is_file(), f"{page}.{ext}"
    linked = set()
    for path in (ROOT / "server").rglob("*.py"):
        if "sandbox" in path.parts:
            continue
        linked |= set(re.findall(r"[\"'](pages/[a-z_]+/[a-z_]+)", path.read_text()))
    assert linked, "the server names no page: is the pattern still right?"
    assert sorted(linked - set(pages)) == []
