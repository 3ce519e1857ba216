"""One-command benchmark of the gateway against a fast fake OpenAI upstream.

    python3 -m uv run python benchmarks/run.py [--duration 10] [--runs 3] [--connections 32]
                                               [--quick] [--scenario plain] [--profile]

It starts the fake upstream (``benchmarks/upstream.py``) and the gateway (``portal serve``, one
worker, SQLite in a temporary directory), pins the gateway on one CPU and the upstream and ``wrk``
on the other, then measures every scenario DIRECT (wrk -> upstream) and THROUGH the gateway
(wrk -> gateway -> upstream), ``--runs`` times each. It prints medians, compares them with the
targets, and writes ``bench-results/<timestamp>.json``. It never fails on timing: the exit status is
0 unless something could not run at all (2: a tool is missing, 1: the upstream or wrk failed). If the
gateway cannot serve the chat endpoint yet, the direct figures are still measured and the gateway is
reported as "not available". Every process it starts is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import secrets
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LUA = HERE / "post.lua"
UPSTREAM = HERE / "upstream.py"
RESULTS_DIR = REPO / "bench-results"
HOST = "127.0.0.1"
CLIENT_KEY = "sk-bench-key-0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-bench"
MODEL = "bench-model"
NOISE_PCT = 10.0
"""Other processes using more than this percent of a pinned CPU during a run make it noisy."""
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

CONFIG_YAML = """\
models:
  - name: bench-model
    deployments:
      - provider: openai
        model: gpt-4o-mini
        api_base: http://127.0.0.1:{upstream_port}/v1
        api_key: env:BENCH_UPSTREAM_KEY
        input_price_per_mtok: "0.15"
        output_price_per_mtok: "0.60"
api_keys:
  - key: sk-bench-key-0123456789abcdef
    allowed_models: ["*"]
{limits}"""

LIMITS_YAML = """\
    limits:
      req_per_min: 100000000
      tokens_per_min: 100000000000
"""

BUDGET_SNIPPET = """
import asyncio, sys
from decimal import Decimal
from sqlalchemy import select
from portal import audit
from portal.config import load_settings
from portal.db.engine import create_engine, create_session_factory
from portal.db.models import ApiKey, SubjectType
from portal.keys.secrets import hash_key
from portal.limits.budgets import set_budget

async def main() -> None:
    settings = load_settings()
    engine = create_engine(settings)
    async with create_session_factory(engine)() as session, session.begin():
        key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(sys.argv[1])))
        assert key is not None, "bench key not registered"
        await set_budget(session, audit.Actor(type="cli", label="benchmark"), subject_type=SubjectType.KEY,
                         subject_id=key.id, amount=Decimal(1_000_000), period="monthly")
    await engine.dispose()

asyncio.run(main())
"""


@dataclass(frozen=True)
class Scenario:
    """One measured workload."""

    name: str
    description: str
    stream: bool
    delay_ms: float
    connections: int


@dataclass(frozen=True)
class Target:
    """A figure the gateway should reach; ``op`` is ``>=`` or ``<=``."""

    scenario: str
    metric: str
    label: str
    op: str
    value: float
    unit: str


TARGETS = [
    Target("plain", "gateway_rps", "plain: gateway RPS", ">=", 2500, "RPS"),
    Target("plain", "gateway_cpu_ms_per_req", "plain: gateway CPU per request", "<=", 0.4, "ms"),
    Target("stream", "gateway_rps", "stream: gateway RPS", ">=", 1500, "RPS"),
    Target("latency1", "added_p50_ms", "latency1: added p50 latency", "<=", 1.0, "ms"),
    Target("latency64", "added_p99_ms", "latency64: added p99 latency", "<=", 5.0, "ms"),
    Target("*", "gateway_peak_rss_mb", "gateway peak RSS", "<=", 150, "MB"),
]


class Fatal(Exception):
    """Something the benchmark needs could not run; the message says what and how to fix it."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------------
# Processes


class Processes:
    """Every child process the benchmark starts, each in its own session, stopped on exit."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    def start(
        self,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        capture_stdout: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd``; output goes to ``log`` (appended) or to pipes the caller must drain."""
        log_file = log.open("ab") if log is not None else None
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed argument lists built here
                cmd,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture_stdout or log_file is None else log_file,
                stderr=log_file or subprocess.PIPE,
                start_new_session=True,
            )
        finally:
            if log_file is not None:
                log_file.close()
        with self._lock:
            self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
        # The group may outlive its leader (e.g. ``uv run`` and its child): always finish it off.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)

    def stop_all(self) -> None:
        with self._lock:
            procs = list(reversed(self._procs))
        for proc in procs:
            self.stop(proc)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _read_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from the ppid of every ``/proc/<pid>/stat``)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _read_stat(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """utime+stime (all threads) of the tree, plus cutime+cstime of children that already exited."""
    ticks = 0
    for pid in process_tree(root):
        fields = _read_stat(pid)
        if fields is not None:
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / CLK_TCK


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def server_pids(root: int) -> list[int]:
    """The gateway's own processes: the tree without the ``uv``/``taskset`` launchers."""
    return [p for p in process_tree(root) if _comm(p) not in {"uv", "taskset"}]


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_mb(root: int) -> tuple[float, float]:
    """(current RSS, high-water mark) summed over the gateway's processes, in MiB."""
    pids = server_pids(root)
    return (
        sum(_status_kb(p, "VmRSS") for p in pids) / 1024,
        sum(_status_kb(p, "VmHWM") for p in pids) / 1024,
    )


class RssSampler:
    """Samples the gateway's RSS every 100 ms in a thread; ``peak_mb`` is the largest sum seen."""

    def __init__(self, root: int | None) -> None:
        self._root = root
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.peak_mb = 0.0
        self.hwm_mb = 0.0

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.1)

    def _sample(self) -> None:
        if self._root is None:
            return
        rss, hwm = rss_mb(self._root)
        self.peak_mb = max(self.peak_mb, rss)
        self.hwm_mb = max(self.hwm_mb, hwm)

    def __enter__(self) -> RssSampler:
        if self._root is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._sample()


def cpu_busy_ticks(cpu: int) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU from ``/proc/stat``."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return sum(values) - idle, sum(values)
    return 0, 0


def background_load(cpus: list[int], seconds: float = 1.0) -> dict[int, float]:
    """Percent busy of each CPU over ``seconds`` while the benchmark itself is idle."""
    before = {c: cpu_busy_ticks(c) for c in cpus}
    time.sleep(seconds)
    after = {c: cpu_busy_ticks(c) for c in cpus}
    load: dict[int, float] = {}
    for c in cpus:
        busy, total = after[c][0] - before[c][0], after[c][1] - before[c][1]
        load[c] = 100.0 * busy / total if total else 0.0
    return load


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------
# HTTP helpers (stdlib only: the benchmark must not depend on the code it measures)


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    content_type: str

    def snippet(self, limit: int = 200) -> str:
        text = self.body.decode("utf-8", "replace").replace("\n", " ").strip()
        return text[:limit] + ("..." if len(text) > limit else "")


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> HttpAnswer:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
            return HttpAnswer(response.status, response.read(), response.headers.get("content-type", ""))
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read(), exc.headers.get("content-type", ""))


def request_body(stream: bool) -> str:
    payload: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 32,
    }
    if stream:
        payload["stream"] = True
    return json.dumps(payload, separators=(",", ":"))


def probe_chat(base_url: str, stream: bool, auth: str | None) -> str | None:
    """None when ``base_url`` answers a chat completion correctly, else why not (status and body)."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    try:
        answer = http("POST", f"{base_url}/v1/chat/completions", request_body(stream).encode(), headers, 30)
    except (OSError, urllib.error.URLError) as exc:
        return f"request failed: {exc}"
    if answer.status != 200:
        return f"HTTP {answer.status}: {answer.snippet()}"
    if stream:
        # The usage chunk is not required: OpenAI sends it only for stream_options.include_usage.
        if "text/event-stream" not in answer.content_type or b"data: [DONE]" not in answer.body:
            return f"HTTP 200 but not a complete event stream ({answer.content_type}): {answer.snippet()}"
        return None
    try:
        data = json.loads(answer.body)
    except ValueError:
        return f"HTTP 200 but not JSON: {answer.snippet()}"
    if not isinstance(data, dict) or not data.get("choices"):
        return f"HTTP 200 but no choices: {answer.snippet()}"
    return None


# --------------------------------------------------------------------------------------------
# wrk

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _TIME_UNITS[match.group(2)]


@dataclass
class WrkResult:
    """What one wrk run reported."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def failures(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def parse_wrk(output: str) -> WrkResult:
    """Parse wrk's text output; the exact figures of post.lua's ``BENCH_JSON`` line win when present."""
    rps_m = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total_m = re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", output, re.M)
    if rps_m is None or total_m is None:
        raise ValueError("wrk printed no Requests/sec line")
    percentiles = dict(re.findall(r"^\s+(\d+(?:\.\d+)?)%\s+(\S+)\s*$", output, re.M))
    lat_m = re.search(r"^\s+Latency\s+(\S+)\s+\S+\s+(\S+)", output, re.M)
    socket_m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output, re.M
    )
    non2xx_m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result = WrkResult(
        requests=int(total_m.group(1)),
        duration_s=_ms(total_m.group(2)) / 1000,
        rps=float(rps_m.group(1)),
        p50_ms=_ms(percentiles["50"]) if "50" in percentiles else float("nan"),
        p99_ms=_ms(percentiles["99"]) if "99" in percentiles else float("nan"),
        mean_ms=_ms(lat_m.group(1)) if lat_m else float("nan"),
        max_ms=_ms(lat_m.group(2)) if lat_m else float("nan"),
        non_2xx=int(non2xx_m.group(1)) if non2xx_m else 0,
        socket_errors=dict(
            zip(("connect", "read", "write", "timeout"), (int(g) for g in socket_m.groups()), strict=True)
        )
        if socket_m
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    )
    exact_m = re.search(r"^BENCH_JSON (\{.*\})\s*$", output, re.M)
    if exact_m is not None:
        exact = json.loads(exact_m.group(1))
        lat = exact["latency_us"]
        result.requests = int(exact["requests"])
        result.duration_s = exact["duration_us"] / 1e6
        if result.duration_s > 0:
            result.rps = result.requests / result.duration_s
        result.p50_ms, result.p99_ms = lat["p50"] / 1000, lat["p99"] / 1000
        result.mean_ms, result.max_ms = lat["mean"] / 1000, lat["max"] / 1000
        errors = exact["errors"]
        result.non_2xx = int(errors["status"])
        result.socket_errors = {k: int(errors[k]) for k in ("connect", "read", "write", "timeout")}
    return result


# --------------------------------------------------------------------------------------------
# The bench


@dataclass
class Sample:
    """One measured wrk run, direct or through the gateway."""

    scenario: str
    target: str
    run: int
    connections: int
    wrk: WrkResult
    cpu_ms_per_req: float | None = None
    cpu_process: str = ""
    peak_rss_mb: float | None = None
    hwm_rss_mb: float | None = None
    upstream_hits: int | None = None
    other_load_pct: dict[str, float] = field(default_factory=dict)
    """Per pinned CPU: percent used by processes other than the gateway, the upstream and wrk."""


@dataclass
class GatewayState:
    available: bool = False
    reason: str = "not started"
    port: int = 0
    startup_s: float | None = None
    log_tail: str = ""
    scenario_reasons: dict[str, str] = field(default_factory=dict)


class Bench:
    """Owns the processes and runs the scenarios."""

    def __init__(self, args: argparse.Namespace, procs: Processes, workdir: Path) -> None:
        self.args = args
        self.procs = procs
        self.workdir = workdir
        self.uv = os.environ.get("UV") or shutil.which("uv") or ""
        self.upstream: subprocess.Popen[bytes] | None = None
        self.upstream_port = 0
        self.gateway: subprocess.Popen[bytes] | None = None
        self.gateway_state = GatewayState()
        self.gateway_log = workdir / "gateway.log"
        self.current_delay_ms = -1.0
        self.pg_database = f"portal_bench_{secrets.token_hex(4)}"

    def drop_database(self) -> None:
        """Drop the benchmark's PostgreSQL database (no-op for SQLite)."""
        if self.args.database == "postgres":
            subprocess.run(  # noqa: S603
                [  # noqa: S607
                    "psql",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-c",
                    f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)',
                ],
                capture_output=True,
                timeout=60,
                check=False,
            )

    # -- upstream -------------------------------------------------------------------------------

    def start_upstream(self) -> None:
        cmd = ["taskset", "-c", str(self.args.load_cpu), sys.executable, str(UPSTREAM), "--host", HOST]
        cmd += ["--port", "0"]
        log = self.workdir / "upstream.log"
        proc = self.procs.start(cmd, log=log, capture_stdout=True)
        self.upstream = proc
        assert proc.stdout is not None
        line = b""
        # The upstream prints one whole line ("READY port=N ...") within a second, or exits.
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if selector.select(timeout=30):
                line = proc.stdout.readline()
        match = re.match(rb"READY port=(\d+)", line)
        if match is None:
            err = log.read_text(errors="replace")[-2000:]
            raise Fatal(f"the fake upstream did not start: {line!r} {err}")
        self.upstream_port = int(match.group(1))
        print(
            f"upstream   http://{HOST}:{self.upstream_port}  (pid {proc.pid}, cpu{self.args.load_cpu}, "
            f"{line.decode().split(' ', 2)[-1].strip()})"
        )
        reason = probe_chat(self.upstream_url, False, None) or probe_chat(self.upstream_url, True, None)
        if reason:
            raise Fatal(f"the fake upstream answers wrongly: {reason}")

    @property
    def upstream_url(self) -> str:
        return f"http://{HOST}:{self.upstream_port}"

    def set_delay(self, delay_ms: float) -> None:
        if delay_ms == self.current_delay_ms:
            return
        answer = http(
            "POST", f"{self.upstream_url}/_bench/delay", json.dumps({"delay_ms": delay_ms}).encode()
        )
        if answer.status != 200:
            raise Fatal(f"could not set the upstream delay: HTTP {answer.status} {answer.snippet()}")
        self.current_delay_ms = delay_ms

    def upstream_hits(self) -> int:
        answer = http("GET", f"{self.upstream_url}/_bench/stats")
        return int(json.loads(answer.body)["requests"])

    # -- gateway --------------------------------------------------------------------------------

    def database_url(self) -> str:
        if self.args.database == "postgres":
            return f"postgresql://postgres@127.0.0.1:5432/{self.pg_database}"
        return f"sqlite:///{self.workdir / 'bench.db'}"

    def gateway_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        if self.args.redis:
            env["PORTAL_REDIS_URL"] = "redis://127.0.0.1:6379/14"
        env.update(
            {
                "PORTAL_DATABASE_URL": self.database_url(),
                "PORTAL_DATA_DIR": str(self.workdir),
                "PORTAL_SECRET_KEY": secrets.token_urlsafe(36)[:48],
                "PORTAL_LOG_LEVEL": "info",  # production default: the access log is measured too
                "PORTAL_CONFIG": str(self.workdir / "portal.yaml"),
                "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
            }
        )
        return env

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.gateway_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start_gateway(self) -> None:
        state = self.gateway_state
        if not self.uv:
            state.reason = "uv not found (neither $UV nor uv on PATH)"
            return
        limits = LIMITS_YAML if self.args.limits else ""
        (self.workdir / "portal.yaml").write_text(
            CONFIG_YAML.format(upstream_port=self.upstream_port, limits=limits)
        )
        if self.args.database == "postgres":
            created = subprocess.run(  # noqa: S603 (psql from PATH, fixed arguments)
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f'CREATE DATABASE "{self.pg_database}"'],  # noqa: S607
                capture_output=True,
                timeout=60,
                check=False,
            )
            if created.returncode != 0:
                state.reason = f"could not create the PostgreSQL database: {created.stderr.decode()[-500:]}"
                return
        env = self.gateway_env()
        started = time.monotonic()
        try:
            migrate = subprocess.run(  # noqa: S603
                [self.uv, "run", "portal", "migrate"],
                cwd=REPO,
                env=env,
                capture_output=True,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired:
            state.reason = "`portal migrate` did not finish in 300 s"
            return
        if migrate.returncode != 0:
            output = (migrate.stdout + migrate.stderr).decode(errors="replace").strip()
            state.reason = f"`portal migrate` failed (exit {migrate.returncode}): {output[-1500:]}"
            return
        state.port = free_port()
        cmd = ["taskset", "-c", str(self.args.gateway_cpu), self.uv, "run", "portal", "serve"]
        cmd += ["--host", HOST, "--port", str(state.port), "--workers", "1"]
        self.gateway = self.procs.start(cmd, env=env, log=self.gateway_log)
        deadline = time.monotonic() + self.args.startup_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.gateway.poll() is not None:
                state.reason = f"`portal serve` exited with {self.gateway.returncode} before it was ready"
                state.log_tail = self.log_tail()
                return
            try:
                answer = http("GET", f"{self.gateway_url}/readyz", timeout=2)
                if answer.status == 200:
                    break
                last = f"HTTP {answer.status}: {answer.snippet()}"
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.2)
        else:
            state.reason = f"/readyz did not answer 200 within {self.args.startup_timeout:.0f} s ({last})"
            state.log_tail = self.log_tail()
            return
        if self.args.limits:
            budget = subprocess.run(  # noqa: S603
                [self.uv, "run", "python", "-c", BUDGET_SNIPPET, CLIENT_KEY],
                cwd=REPO,
                env=env,
                capture_output=True,
                timeout=120,
                check=False,
            )
            if budget.returncode != 0:
                state.reason = f"could not set the bench budget: {budget.stderr.decode()[-800:]}"
                return
        state.startup_s = time.monotonic() - started
        print(
            f"gateway    {self.gateway_url}  (pid {self.gateway.pid}, cpu{self.args.gateway_cpu}, "
            f"ready in {state.startup_s:.1f} s incl. migrate)"
        )
        reason = probe_chat(self.gateway_url, False, f"Bearer {CLIENT_KEY}")
        state.available = reason is None
        state.reason = "available" if reason is None else f"not available: {reason}"
        if reason is not None:
            state.log_tail = self.log_tail()

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.gateway_state.port}"

    def gateway_reason(self, scenario: Scenario) -> str | None:
        """None when the gateway can be measured in ``scenario``, else why not."""
        state = self.gateway_state
        if self.gateway is None or self.gateway.poll() is not None:
            if state.available:
                state.available = False
                state.reason = "not available: the gateway process exited during the benchmark"
                state.log_tail = self.log_tail()
            return state.reason
        if not scenario.stream:
            return None if state.available else state.reason
        if "stream" not in state.scenario_reasons:
            reason = probe_chat(self.gateway_url, True, f"Bearer {CLIENT_KEY}")
            state.scenario_reasons["stream"] = "" if reason is None else f"not available: {reason}"
        return state.scenario_reasons["stream"] or None

    # -- measuring ------------------------------------------------------------------------------

    def wrk(self, url: str, scenario: Scenario, duration: float, auth: str | None) -> WrkResult:
        cmd = ["taskset", "-c", str(self.args.load_cpu), "wrk", "-t1", f"-c{scenario.connections}"]
        cmd += [f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s", "-s", str(LUA)]
        cmd.append(f"{url}/v1/chat/completions")
        env = dict(os.environ, BENCH_BODY=request_body(scenario.stream), BENCH_AUTH=auth or "")
        proc = self.procs.start(cmd, env=env)
        try:
            out, err = proc.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc)
            raise Fatal(f"wrk did not finish within {duration + 60:.0f} s") from None
        self.procs.stop(proc)
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise Fatal(f"wrk failed (exit {proc.returncode}): {err.decode(errors='replace')} {text}")
        try:
            return parse_wrk(text)
        except (ValueError, KeyError) as exc:
            raise Fatal(f"could not parse wrk's output ({exc}):\n{text}") from None

    def measure(self, scenario: Scenario, target: str, run: int, duration: float) -> Sample:
        gateway = target == "gateway"
        url = self.gateway_url if gateway else self.upstream_url
        auth = f"Bearer {CLIENT_KEY}" if gateway else None
        assert self.upstream is not None
        own = {"upstream": self.upstream.pid}
        if self.gateway is not None and self.gateway.poll() is None:
            own["gateway"] = self.gateway.pid
        cpus = sorted({self.args.gateway_cpu, self.args.load_cpu})
        hits_before = self.upstream_hits()
        cpu_before = {name: tree_cpu_seconds(pid) for name, pid in own.items()}
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        ticks_before = {c: cpu_busy_ticks(c) for c in cpus}
        with RssSampler(own["gateway"] if gateway else None) as rss:
            result = self.wrk(url, scenario, duration, auth)
            if gateway:
                # Count work the gateway defers past the response (spend/usage writes...).
                time.sleep(self.args.settle)
        cpu_used = {name: tree_cpu_seconds(pid) - cpu_before[name] for name, pid in own.items()}
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        ticks_after = {c: cpu_busy_ticks(c) for c in cpus}
        # wrk is the only child reaped in the window: its CPU is the delta of RUSAGE_CHILDREN.
        cpu_used["wrk"] = (children_after.ru_utime + children_after.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
        sample = Sample(scenario.name, target, run, scenario.connections, result)
        sample.cpu_process = "gateway" if gateway else "upstream"
        if result.requests:
            sample.cpu_ms_per_req = cpu_used[sample.cpu_process] * 1000 / result.requests
        sample.upstream_hits = self.upstream_hits() - hits_before
        if gateway:
            sample.peak_rss_mb, sample.hwm_rss_mb = rss.peak_mb, rss.hwm_mb
        # How much of the pinned CPUs processes other than ours used (noise from a shared machine).
        mine = dict.fromkeys(cpus, 0.0)
        mine[self.args.load_cpu] += cpu_used["upstream"] + cpu_used["wrk"]
        mine[self.args.gateway_cpu] += cpu_used.get("gateway", 0.0)
        for c in cpus:
            busy = (ticks_after[c][0] - ticks_before[c][0]) / CLK_TCK
            wall = (ticks_after[c][1] - ticks_before[c][1]) / CLK_TCK
            if wall > 0:
                sample.other_load_pct[f"cpu{c}"] = round(max(0.0, 100.0 * (busy - mine[c]) / wall), 1)
        return sample

    def run_scenario(self, scenario: Scenario) -> tuple[list[Sample], str | None]:
        self.set_delay(scenario.delay_ms)
        reason = self.gateway_reason(scenario)
        targets = ["direct"] if reason else ["direct", "gateway"]
        if reason:
            print(f"  gateway {reason}")
        if self.args.warmup > 0:
            for target in targets:
                url = self.gateway_url if target == "gateway" else self.upstream_url
                auth = f"Bearer {CLIENT_KEY}" if target == "gateway" else None
                self.wrk(url, scenario, self.args.warmup, auth)
        samples: list[Sample] = []
        for run in range(1, self.args.runs + 1):
            for target in targets:
                sample = self.measure(scenario, target, run, self.args.duration)
                samples.append(sample)
                print("  " + describe_sample(sample, self.args.runs))
        return samples, reason

    def profile(self) -> dict[str, Any]:
        """py-spy on the gateway during ``plain`` runs: a flamegraph SVG and a speedscope JSON."""
        if self.gateway is None or not self.gateway_state.available:
            return {"skipped": f"gateway {self.gateway_state.reason}"}
        pids = server_pids(self.gateway.pid)
        if not pids:
            return {"skipped": "no gateway process found"}
        pid = pids[0]
        pyspy = Path(sys.executable).parent / "py-spy"
        base = [str(pyspy)] if pyspy.exists() else [self.uv, "run", "py-spy"]
        plain = build_scenarios(self.args)["plain"]
        self.set_delay(0.0)
        stamp = self.args.stamp
        report: dict[str, Any] = {"pid": pid}
        for fmt, suffix in (("flamegraph", "svg"), ("speedscope", "speedscope.json")):
            out = RESULTS_DIR / f"{stamp}-profile-plain.{suffix}"
            cmd = ["taskset", "-c", str(self.args.load_cpu), *base, "record", "--pid", str(pid)]
            cmd += ["--duration", str(round(self.args.duration) + 1), "--rate", "100", "--format", fmt]
            cmd += ["--output", str(out)]
            spy = self.procs.start(cmd, log=self.workdir / "py-spy.log")
            time.sleep(0.5)
            result = self.wrk(self.gateway_url, plain, self.args.duration, f"Bearer {CLIENT_KEY}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(timeout=60)
            self.procs.stop(spy)
            if out.exists():
                report[fmt] = str(out.relative_to(REPO))
                print(f"  profile ({fmt}): {out.relative_to(REPO)}  [{result.rps:,.0f} RPS while sampled]")
            else:
                tail = (self.workdir / "py-spy.log").read_text(errors="replace")[-1000:]
                report[f"{fmt}_error"] = tail
                print(f"  py-spy produced no {fmt} output: {tail}")
        return report


def build_scenarios(args: argparse.Namespace) -> dict[str, Scenario]:
    c, d = args.connections, args.delay_ms
    return {
        "plain": Scenario("plain", f"non-streaming, no upstream delay, {c} connections", False, 0.0, c),
        "stream": Scenario(
            "stream", f"streaming (20 chunks + usage), no upstream delay, {c} connections", True, 0.0, c
        ),
        "latency1": Scenario(
            "latency1", f"non-streaming, upstream delay {d:g} ms, 1 connection", False, d, 1
        ),
        "latency64": Scenario(
            "latency64", f"non-streaming, upstream delay {d:g} ms, 64 connections", False, d, 64
        ),
    }


# --------------------------------------------------------------------------------------------
# Reporting


def describe_sample(s: Sample, runs: int) -> str:
    w = s.wrk
    cpu = f"{s.cpu_process} CPU {s.cpu_ms_per_req:.3f} ms/req" if s.cpu_ms_per_req is not None else ""
    extra = ""
    if s.target == "gateway":
        extra = f"  RSS {s.peak_rss_mb:.0f} MB"
        # Up to one request per connection is still in flight (and counted upstream) when wrk stops.
        slack = s.connections + 0.02 * w.requests
        if s.upstream_hits is not None and abs(s.upstream_hits - w.requests) > slack:
            extra += f"  (upstream saw {s.upstream_hits} requests for {w.requests})"
    noisy = {name: pct for name, pct in s.other_load_pct.items() if pct > NOISE_PCT}
    if noisy:
        extra += "  [other processes used " + ", ".join(f"{v:.0f}% of {k}" for k, v in noisy.items()) + "]"
    fail = f"  FAILURES {w.failures} (non-2xx {w.non_2xx})" if w.failures else ""
    return (
        f"run {s.run}/{runs} {s.target:<7} {w.rps:>10,.0f} RPS  p50 {w.p50_ms:7.2f} ms"
        f"  p99 {w.p99_ms:7.2f} ms  {cpu}{extra}{fail}"
    )


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """Medians over runs, for each target, plus the paired gateway-minus-direct latencies."""
    summary: dict[str, Any] = {}
    for target in ("direct", "gateway"):
        mine = [s for s in samples if s.target == target]
        if not mine:
            continue
        summary[target] = {
            "runs": len(mine),
            "rps": _median([s.wrk.rps for s in mine]),
            "p50_ms": _median([s.wrk.p50_ms for s in mine]),
            "p99_ms": _median([s.wrk.p99_ms for s in mine]),
            "cpu_ms_per_req": _median([s.cpu_ms_per_req for s in mine]),
            "requests": sum(s.wrk.requests for s in mine),
            "non_2xx": sum(s.wrk.non_2xx for s in mine),
            "socket_errors": sum(sum(s.wrk.socket_errors.values()) for s in mine),
            "failures": sum(s.wrk.failures for s in mine),
        }
        if target == "gateway":
            summary[target]["peak_rss_mb"] = max((s.peak_rss_mb or 0.0) for s in mine)
            summary[target]["hwm_rss_mb"] = max((s.hwm_rss_mb or 0.0) for s in mine)
    if "direct" in summary and "gateway" in summary:
        pairs = [
            (d, g)
            for d in samples
            for g in samples
            if d.target == "direct" and g.target == "gateway" and d.run == g.run
        ]
        summary["ratio_rps"] = summary["gateway"]["rps"] / summary["direct"]["rps"]
        summary["added_p50_ms"] = _median([g.wrk.p50_ms - d.wrk.p50_ms for d, g in pairs])
        summary["added_p99_ms"] = _median([g.wrk.p99_ms - d.wrk.p99_ms for d, g in pairs])
    return summary


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'scenario':<10} {'path':<8} {'RPS':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11} "
        f"{'failures':>9}  {'gw/direct':>9} {'+p50 ms':>8} {'+p99 ms':>8}"
    )
    print("\n" + header)
    print("-" * len(header))
    for name, result in results.items():
        summary = result["summary"]
        for target in ("direct", "gateway"):
            row = summary.get(target)
            if row is None:
                reason = _shorten(result["gateway_reason"] or "not measured", 80)
                print(f"{name if target == 'direct' else '':<10} {target:<8} {reason}")
                continue
            cpu = _fmt(row["cpu_ms_per_req"], ".3f") + ("u" if target == "direct" else " ")
            tail = ""
            if target == "gateway":
                tail = (
                    f"  {_fmt(summary['ratio_rps'], '.3f'):>9} {_fmt(summary['added_p50_ms'], '+.2f'):>8}"
                    f" {_fmt(summary['added_p99_ms'], '+.2f'):>8}"
                )
            print(
                f"{name if target == 'direct' else '':<10} {target:<8} {row['rps']:>10,.0f} "
                f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {cpu:>11} {row['failures']:>9}{tail}"
            )
    print("(medians over runs; CPU of the direct rows, marked u, is the fake upstream's own)")
    samples = [s for r in results.values() for s in r["samples"]]
    noisy = [s for s in samples if any(v > NOISE_PCT for v in s["other_load_pct"].values())]
    if noisy:
        print(
            f"warning: in {len(noisy)} of {len(samples)} runs other processes used more than "
            f"{NOISE_PCT:g}% of a pinned CPU; those figures are unreliable (the machine is shared)"
        )


def evaluate_targets(results: dict[str, dict[str, Any]], gateway: GatewayState) -> list[dict[str, Any]]:
    evaluated: list[dict[str, Any]] = []
    for target in TARGETS:
        value: float | None = None
        failures = 0
        note = ""
        if target.scenario == "*":
            gw = [r["summary"]["gateway"] for r in results.values() if "gateway" in r["summary"]]
            if gw:
                value = max(max(g["peak_rss_mb"], g["hwm_rss_mb"]) for g in gw)
        elif target.scenario not in results:
            note = "scenario not run"
        else:
            summary = results[target.scenario]["summary"]
            gw_row = summary.get("gateway")
            if gw_row is None:
                note = results[target.scenario]["gateway_reason"] or f"gateway {gateway.reason}"
            else:
                failures = gw_row["failures"]
                value = {
                    "gateway_rps": gw_row["rps"],
                    "gateway_cpu_ms_per_req": gw_row["cpu_ms_per_req"],
                    "added_p50_ms": summary.get("added_p50_ms"),
                    "added_p99_ms": summary.get("added_p99_ms"),
                }[target.metric]
        if value is None:
            status = "N/A"
            note = note or f"gateway {gateway.reason}"
        else:
            ok = value >= target.value if target.op == ">=" else value <= target.value
            status = "MET" if ok and failures == 0 else "NOT MET"
            notes = [f"{failures} failed requests"] if failures else []
            scope = list(results) if target.scenario == "*" else [target.scenario]
            noisy = sum(
                1
                for name in scope
                for sample in results[name]["samples"]
                if any(v > NOISE_PCT for v in sample["other_load_pct"].values())
            )
            if noisy:
                notes.append(f"unreliable: {noisy} run(s) disturbed by other processes")
            note = "; ".join(notes)
        evaluated.append({**asdict(target), "measured": value, "status": status, "note": note})
    return evaluated


def print_targets(evaluated: list[dict[str, Any]]) -> None:
    print("\nTargets")
    for t in evaluated:
        measured = "-" if t["measured"] is None else f"{t['measured']:,.3f}".rstrip("0").rstrip(".")
        goal = f"{t['op']} {t['value']:g} {t['unit']}"
        note = f"  ({_shorten(t['note'], 80)})" if t["note"] else ""
        print(f"  {t['label']:<32} {goal:<14} measured {measured:>10}  {t['status']}{note}")


def environment_info(args: argparse.Namespace, load: dict[int, float]) -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - read-only
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    wrk_version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        wrk_version = subprocess.run(
            ["wrk", "-v"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.splitlines()[0]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpus_available": sorted(os.sched_getaffinity(0)),
        "gateway_cpu": args.gateway_cpu,
        "load_cpu": args.load_cpu,
        "background_load_pct": {f"cpu{c}": round(v, 1) for c, v in load.items()},
        "git_commit": commit,
        "wrk": wrk_version,
    }


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per scenario and path (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="connections for plain/stream (32)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 run each, 1 s warm-up")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=["plain", "stream", "latency1", "latency64"],
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--delay-ms", type=float, default=50.0, help="upstream delay of latency* (50)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per path (2; quick 1)")
    parser.add_argument("--settle", type=float, default=None, help="seconds of gateway CPU counted after wrk")
    parser.add_argument("--no-gateway", action="store_true", help="measure the direct path only")
    parser.add_argument("--profile", action="store_true", help="py-spy flamegraph + speedscope of plain")
    parser.add_argument("--gateway-cpu", type=int, default=0, help="CPU for the gateway (0)")
    parser.add_argument("--load-cpu", type=int, default=1, help="CPU for upstream, wrk and py-spy (1)")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for /readyz")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (DB, logs)")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="gateway database: a SQLite file (default) or a fresh PostgreSQL database on 127.0.0.1",
    )
    parser.add_argument("--redis", action="store_true", help="limits backend in Redis (127.0.0.1:6379/14)")
    parser.add_argument(
        "--limits",
        action="store_true",
        help="give the bench key a budget and rate limits (checked on every call, never refusing)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.runs = 3.0, 1
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    if args.settle is None:
        args.settle = 0.5 if args.quick else 1.0
    if args.duration < 1 or args.duration > 600:
        parser.error("--duration must be between 1 and 600 seconds")
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be between 1 and 50")
    if not 1 <= args.connections <= 10_000:
        parser.error("--connections must be between 1 and 10000")
    args.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return args


def check_tools(args: argparse.Namespace) -> None:
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        hints = {"wrk": "apt-get install -y wrk", "taskset": "apt-get install -y util-linux"}
        lines = [f"  {tool}: not found; install it with: {hints[tool]}" for tool in missing]
        raise Fatal(
            "missing tools:\n" + "\n".join(lines) + "\n(on Debian/Ubuntu run apt-get update first)", 2
        )
    cpus = sorted(os.sched_getaffinity(0))
    if args.gateway_cpu not in cpus or args.load_cpu not in cpus:
        if len(cpus) >= 2:
            args.gateway_cpu, args.load_cpu = cpus[0], cpus[1]
        else:
            args.gateway_cpu = args.load_cpu = cpus[0]
        print(f"warning: pinning the gateway on cpu{args.gateway_cpu}, the load on cpu{args.load_cpu}")
    if args.gateway_cpu == args.load_cpu:
        print(
            "warning: only one CPU: the gateway shares it with wrk and the upstream; figures are pessimistic"
        )


def run(args: argparse.Namespace, procs: Processes) -> int:
    check_tools(args)
    scenarios = build_scenarios(args)
    chosen = [scenarios[n] for n in (args.scenario or list(scenarios))]
    load = background_load(sorted({args.gateway_cpu, args.load_cpu}))
    busy = {c: v for c, v in load.items() if v > 10}
    if busy:
        shown = ", ".join(f"cpu{c} {v:.0f}%" for c, v in busy.items())
        print(f"warning: the machine is busy before the benchmark starts ({shown}); figures will be noisy")
    workdir = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    bench = Bench(args, procs, workdir)
    results: dict[str, dict[str, Any]] = {}
    profile: dict[str, Any] | None = None
    try:
        bench.start_upstream()
        if args.no_gateway:
            bench.gateway_state.reason = "not measured (--no-gateway)"
        else:
            bench.start_gateway()
            if not bench.gateway_state.available:
                print(f"gateway    {bench.gateway_state.reason}")
                if bench.gateway_state.log_tail:
                    print("           log tail:\n" + _indent(bench.gateway_state.log_tail, 12))
        for scenario in chosen:
            print(f"\n[{scenario.name}] {scenario.description}")
            samples, reason = bench.run_scenario(scenario)
            results[scenario.name] = {
                "description": scenario.description,
                "params": asdict(scenario),
                "gateway_reason": reason,
                "samples": [_sample_json(s) for s in samples],
                "summary": summarize(samples),
            }
        if args.profile:
            print("\n[profile] py-spy on the gateway during plain")
            profile = bench.profile()
            if "skipped" in profile:
                print(f"  skipped: {_shorten(profile['skipped'], 100)}")
    finally:
        if bench.gateway is not None and not bench.gateway_state.log_tail:
            bench.gateway_state.log_tail = bench.log_tail(10)
        procs.stop_all()
        bench.drop_database()
        if args.keep_tmp:
            print(f"temporary files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print_table(results)
    evaluated = evaluate_targets(results, bench.gateway_state)
    print_targets(evaluated)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{args.stamp}.json"
    document = {
        "started_at": args.stamp,
        "config": {k: v for k, v in vars(args).items() if k not in {"stamp"} and not isinstance(v, Path)},
        "environment": environment_info(args, load),
        "upstream": {"port": bench.upstream_port},
        "gateway": asdict(bench.gateway_state),
        "scenarios": results,
        "targets": evaluated,
        "profile": profile,
    }
    out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nresults written to {out.relative_to(REPO)}")
    return 0


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def _sample_json(sample: Sample) -> dict[str, Any]:
    data = asdict(sample)
    data["wrk"]["failures"] = sample.wrk.failures
    return data


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args = parse_args(argv)
    procs = Processes()
    try:
        with _signals():
            return run(args, procs)
    except Fatal as exc:
        print(f"benchmark cannot run: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("\ninterrupted; all benchmark processes stopped", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
