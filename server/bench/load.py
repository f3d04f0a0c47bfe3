"""The load side of a bench: wrk, its Lua scripts and options, what one request cost in CPU
(server processes, Redis, wrk, read from /proc around each run), and the results.

Results of one wrk run are dicts: `rps`, `p50_ms`, `p99_ms`, `seconds`, `statuses`
({0: answers < 400, 400: answers >= 400, -1: socket errors}) and `cpu_us` (per request:
server processes, Redis, wrk); `merge` adds rounds up, `table_row` makes a report row.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.bench.harness import BenchServer, local_redis_pid

# -- wrk's Lua scripts ---------------------------------------------------------------------------

# Shared by the scripts that send tokens: each thread learns its number (`tid`, from 1) in
# setup(), before its init() runs; done() prints what `Wrk.run` parses. Statuses come from
# wrk's summary (errors.status counts answers >= 400): a response() hook costs wrk more CPU
# than the server spends on /healthz.
_WRK_THREADS_AND_REPORT = r"""
setup = function(thread)
  threads = threads or {}
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end
done = function(summary, latency, requests)
  local e = summary.errors
  local failed = e.connect + e.read + e.write + e.timeout
  io.write(string.format("STATUS 0 %d\n", summary.requests - e.status - failed))
  io.write(string.format("STATUS 400 %d\n", e.status))
  io.write(string.format("STATUS -1 %d\n", failed))
  io.write(string.format("LAT %f %f\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
  io.write(string.format("TOTAL %d %f\n", summary.requests, summary.duration / 1e6))
end
"""

# What the token scripts share. Each wrk thread builds its requests in init(), before the
# clock starts: prefixes (a request up to its Idempotency-Key's last part) plus a unique
# number each (so no request is a replay), then request() only hands the next one out.
# Building them per request (wrk.format, or even string concatenation) costs wrk more CPU
# than the server spends on /healthz, and wrk shares the machine's two cores with the
# server and Redis. Past the prepared ones, requests are concatenated on the fly. A script's
# init() fills `prefixes`, sets `pick(i)` (the prefix request i uses) and calls prepare().
_WRK_REQUESTS = r"""
local prefixes = {}
local reqs = {}
local tail = ""
local n = 0
local pick = nil
tid = 0
local function after_token(method, body, key)
  local entity = ""
  if method ~= "GET" then
    entity = "\r\nContent-Type: application/json\r\nContent-Length: " .. #body
  end
  return entity .. "\r\nIdempotency-Key: " .. key
end
local function prepare(count, body)
  tail = "\r\n\r\n" .. body
  for i = 1, count do
    reqs[i] = prefixes[pick(i)] .. i .. tail
  end
end
request = function()
  n = n + 1
  local r = reqs[n]
  if r then return r end
  return prefixes[pick(n)] .. n .. tail
end
"""

# One path, a bearer token per line of a file, the tokens taken in a scattered order.
# Arguments: path, tokens file, body, method, requests to prepare per thread, run id.
WRK_TOKENS_LUA = (
    _WRK_REQUESTS
    + r"""
init = function(args)
  local path, body, method = args[1], args[3] or "", args[4] or "POST"
  local count = tonumber(args[5] or "0")
  local run = args[6] or "r"
  local host = wrk.host .. ":" .. wrk.port
  local after = after_token(method, body, run .. "-" .. tid .. "-")
  for line in io.lines(args[2]) do
    prefixes[#prefixes + 1] = method .. " " .. path .. " HTTP/1.1\r\nHost: " .. host
      .. "\r\nAuthorization: Bearer " .. line .. after
  end
  pick = function(i) return (i * 7919 + tid * 104729) % #prefixes + 1 end
  prepare(count, body)
end
"""
    + _WRK_THREADS_AND_REPORT
)

# A path and a bearer token per line ("<path>\t<token>"), for requests that each need their
# own path. Thread t of T takes the lines i (from 0) with i % T == t - 1 and i < T * count,
# so the threads of one run never send the same line, and builds `count` requests (cycling
# over its lines when the file has fewer); lines past T * count are not read. Past the
# prepared requests a thread's lines are reused, with fresh keys. A fixed path, when given,
# replaces every line's (the same generator aimed at another endpoint).
# Arguments: lines file, requests to prepare per thread, threads, method, body, run id[, path].
WRK_LINES_LUA = (
    _WRK_REQUESTS
    + r"""
init = function(args)
  local count, step = tonumber(args[2]), tonumber(args[3])
  local method, body, run, fixed = args[4], args[5] or "", args[6], args[7]
  local head = method .. " "
  local host = " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port .. "\r\nAuthorization: Bearer "
  local after = after_token(method, body, run .. "-" .. tid .. "-")
  local i = 0
  for line in io.lines(args[1]) do
    if i >= step * count then break end
    if i % step == tid - 1 then
      local tab = line:find("\t", 1, true)
      prefixes[#prefixes + 1] = head .. (fixed or line:sub(1, tab - 1)) .. host
        .. line:sub(tab + 1) .. after
    end
    i = i + 1
  end
  pick = function(j) return (j - 1) % #prefixes + 1 end
  prepare(count, body)
end
"""
    + _WRK_THREADS_AND_REPORT
)

# Static requests (wrk's own GET of the URL): the cheapest load wrk makes.
WRK_GET_LUA = r"""
local threads = {}
setup = function(thread) threads[#threads + 1] = thread end
done = function(summary, latency, requests)
  io.write(string.format("STATUS 0 %d\n", summary.requests - summary.errors.status))
  io.write(string.format("STATUS 400 %d\n", summary.errors.status))
  io.write(string.format("LAT %f %f\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
  io.write(string.format("TOTAL %d %f\n", summary.requests, summary.duration / 1e6))
end
"""

STATUS_LABELS = {0: "2xx", 400: ">=400", -1: "socket-errors"}


def add_wrk_options(
    p: argparse.ArgumentParser, measured: str, members_help: str = "distinct members (tokens)"
) -> None:
    """The options every wrk bench takes; `measured` names the endpoint set against JSON."""
    p.add_argument(
        "--duration",
        type=int,
        default=10,
        help=f"seconds of load per endpoint (JSON and {measured}: split over the rounds)",
    )
    p.add_argument(
        "--rounds", type=int, default=5, help=f"JSON and {measured} alternate this many times"
    )
    p.add_argument("--connections", type=int, default=64, help="wrk's open connections")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--workers", type=int, default=2, help="server worker processes")
    p.add_argument("--members", type=int, default=5000, help=members_help)


def prepared_requests(threads: int, seconds: int) -> str:
    """How many requests each wrk thread builds before the clock starts, for a run of
    `seconds` (enough for ~24k requests a second, at most 60k a thread)."""
    return str(min(60_000, seconds * 24_000 // max(1, threads)))


def say_preparing(env: dict[str, str], members: int) -> None:
    print(
        f"preparing: database {env['HAODIAN_DATABASE_URL'].split('@')[-1]}, "
        f"redis {env['HAODIAN_REDIS_URL']}, {members} members",
        flush=True,
    )


def say_measuring(args: argparse.Namespace) -> None:
    print(
        f"measuring: wrk -t{args.threads} -c{args.connections} -d{args.duration}s each",
        flush=True,
    )


def write_scripts(workdir: Path) -> dict[str, Path]:
    """The Lua scripts as files wrk can load: {"tokens", "lines", "get"} -> path."""
    out = {}
    for name, text in (("tokens", WRK_TOKENS_LUA), ("lines", WRK_LINES_LUA), ("get", WRK_GET_LUA)):
        out[name] = workdir / f"wrk-{name}.lua"
        out[name].write_text(text)
    return out


def run_id() -> str:
    """Part of every Idempotency-Key of one wrk run, so a later run never replays an earlier."""
    return uuid.uuid4().hex[:8]


# -- wrk and CPU accounting ----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _database_cpu() -> float:
    """CPU seconds of the PostgreSQL processes on this machine (backends, WAL writer,
    checkpointer): what a request cost the database, when it runs here. A backend that ends
    during a run takes its share with it; the server's pool keeps its connections."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += _proc_cpu(int(entry.name))
            except OSError:
                continue
    return total


@dataclass
class Wrk:
    """wrk at fixed threads and connections; each run also says what one request cost the
    server's processes (`server_group`), Redis (`redis_pid`, when it runs here) and wrk."""

    threads: int
    connections: int
    duration: int
    server_group: int | None = None
    redis_pid: int | None = None

    @classmethod
    def on(cls, server: BenchServer, args: argparse.Namespace, redis_url: str) -> Wrk:
        """wrk as the bench's options say, its CPU figures on this server and Redis."""
        return cls(
            args.threads,
            args.connections,
            args.duration,
            server_group=server.group,
            redis_pid=local_redis_pid(redis_url),
        )

    def cpu_now(self) -> dict[str, float]:
        """CPU seconds used so far by the server's processes, Redis and the load generator
        (wrk runs as our child), so each measurement can say what one request cost each of
        them: the part of the ratio that a busy, shared machine does not blur."""
        import resource

        server = 0.0
        if self.server_group is not None:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        if os.getpgid(int(entry.name)) == self.server_group:
                            server += _proc_cpu(int(entry.name))
                    except OSError:
                        continue
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "server": server,
            "redis": _proc_cpu(self.redis_pid) if self.redis_pid else 0.0,
            "db": _database_cpu(),
            "wrk": child.ru_utime + child.ru_stime,
        }

    def run(
        self, url: str, lua: Path, *script_args: str, seconds: int | None = None
    ) -> dict[str, Any]:
        """One wrk run of `seconds` (default: the duration) with the script and its args."""
        cmd = [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{seconds or self.duration}s",
            "--latency",
            "-s",
            str(lua),
            url,
        ]
        if script_args:
            cmd += ["--", *script_args]
        before = self.cpu_now()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        after = self.cpu_now()
        statuses = {int(a): int(b) for a, b in re.findall(r"^STATUS (-?\d+) (\d+)$", out, re.M)}
        p50, p99 = (float(x) for x in re.search(r"^LAT (\S+) (\S+)$", out, re.M).groups())  # type: ignore[union-attr]
        total, secs = re.search(r"^TOTAL (\d+) (\S+)$", out, re.M).groups()  # type: ignore[union-attr]
        secs_f = float(secs)
        n = max(1, int(total))
        return {
            "cpu_us": {k: (after[k] - before[k]) * 1e6 / n for k in after},
            "rps": int(total) / secs_f,
            "p50_ms": p50,
            "p99_ms": p99,
            "statuses": statuses,
            "seconds": secs_f,
        }


def warm_up(url: str, lua: Path | None = None, *script_args: str) -> None:
    """Two seconds of light load, not measured: every worker connects and caches."""
    cmd = ["wrk", "-t2", "-c16", "-d2s"]
    if lua is not None:
        cmd += ["-s", str(lua)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    subprocess.run(cmd, capture_output=True)


# -- results -------------------------------------------------------------------------------------


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one measurement added up (latencies: the mean of the rounds' percentiles)."""
    statuses: dict[int, int] = {}
    for part in parts:
        for k, v in part["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    seconds = sum(p["seconds"] for p in parts)
    counts = [p["rps"] * p["seconds"] for p in parts]
    return {
        "cpu_us": {
            k: sum(p["cpu_us"][k] * c for p, c in zip(parts, counts, strict=True)) / sum(counts)
            for k in parts[0]["cpu_us"]
        },
        "rps": sum(counts) / seconds,
        "p50_ms": sum(p["p50_ms"] for p in parts) / len(parts),
        "p99_ms": sum(p["p99_ms"] for p in parts) / len(parts),
        "statuses": statuses,
        "seconds": seconds,
    }


def cpu_columns(result: dict[str, Any]) -> dict[str, int]:
    """CPU per request in whole µs: {"server_us", "redis_us", "db_us", "wrk_us"}."""
    return {f"{k}_us": round(v) for k, v in result["cpu_us"].items()}


def cpu_ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    """All CPU one request of `a` cost over all one request of `b` cost."""
    return round(sum(a["cpu_us"].values()) / sum(b["cpu_us"].values()), 3)


def measured_facts(name: str, json: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """CPU per request (µs) of the server, Redis and wrk for JSON and the measured endpoint,
    the ratio of the two, and the measured endpoint's latency."""
    return {
        "json_cpu_us": cpu_columns(json),
        f"{name}_cpu_us": cpu_columns(measured),
        f"cpu_json_vs_{name}": cpu_ratio(json, measured),
        f"{name}_p50_ms": round(measured["p50_ms"], 2),
        f"{name}_p99_ms": round(measured["p99_ms"], 2),
    }


def run_facts(args: argparse.Namespace) -> dict[str, int]:
    """How the load was made, for the end of a bench's JSON line."""
    return {
        "connections": args.connections,
        "workers": args.workers,
        "duration_s": args.duration,
        "rounds": args.rounds,
    }


def table_row(name: str, result: dict[str, Any], ok: int) -> dict[str, Any]:
    """A report row; `ok` is the status class counted as the endpoint's success (0 or 400)."""
    return {
        **cpu_columns(result),
        "endpoint": name,
        "req_per_s": round(result["rps"]),
        "ok_per_s": round(result["statuses"].get(ok, 0) / result["seconds"]),
        "p50_ms": round(result["p50_ms"], 2),
        "p99_ms": round(result["p99_ms"], 2),
        "answers": " ".join(
            f"{STATUS_LABELS[k]}:{v}" for k, v in sorted(result["statuses"].items()) if v or k != -1
        ),
    }
