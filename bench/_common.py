"""Shared plumbing for the benchmarks: free ports, databases, servers as
subprocesses, seeding sessions, running wrk and reading its figures.

Every server here is a real process (uvicorn or granian, 1..N workers) listening
on an ephemeral loopback port; every loop is bounded in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WRK = shutil.which("wrk") or "/usr/bin/wrk"

PG_ADMIN = os.environ.get(
    "FRESHTOKEN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BENCH_SECRET = "bench-secret-" + "x" * 40  # same for every process of one run
BENCH_USER = ("bench", "bench-password")


# --- machine -----------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "cpu": cpu,
        "vcpus": str(os.cpu_count()),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- databases ---------------------------------------------------------------------


def postgres_available() -> bool:
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database URL of ``kind`` ("sqlite" or "postgresql"), removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="freshtoken-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(PG_ADMIN)
    name = f"freshtoken_bench_{secrets.token_hex(5)}"
    conninfo = (
        f"host={admin.host or '127.0.0.1'} port={admin.port or 5432} "
        f"user={admin.username or 'postgres'} dbname={admin.database or 'postgres'}"
    )
    if admin.password:
        conninfo += f" password={admin.password}"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FRESHTOKEN_") or k.startswith("FRESHTOKEN_BENCH")
    }
    env.update(
        {
            "FRESHTOKEN_DATABASE_URL": database_url,
            "FRESHTOKEN_SECRET_KEY": BENCH_SECRET,
            "FRESHTOKEN_RATELIMIT_ENABLED": "false",
            "FRESHTOKEN_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
            ),
        }
    )
    env.update(extra)
    return env


def seed_sessions(database_url: str, count: int, *, with_user: bool = True) -> list[str]:
    """Migrate, create the bench user, and open ``count`` sessions straight through the
    repository (a login per session would spend ``count`` argon2 verifications).
    Returns each session's live refresh token."""
    from freshtoken.server.app import build_service
    from freshtoken.server.service import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SCOPE
    from freshtoken.server.settings import Settings
    from freshtoken.server.storage import repository as repo
    from freshtoken.server.tokens import hash_refresh_token, new_refresh_token

    settings = Settings(database_url=database_url, secret_key=BENCH_SECRET, ratelimit_enabled=False)
    service = build_service(settings)
    try:
        service.bootstrap()
        user_id = service.create_user(*BENCH_USER) if with_user else None
        tokens: list[str] = []
        if count:
            assert user_id is not None
            now = time.time()
            absolute = now + settings.session_max_ttl
            with service.db.transaction() as conn:
                for _ in range(count):
                    session_id = secrets.token_hex(16)
                    token = new_refresh_token()
                    repo.insert_session(
                        conn,
                        id=session_id,
                        user_id=user_id,
                        client_id=DEFAULT_CLIENT_ID,
                        scope=DEFAULT_CLIENT_SCOPE,
                        created_at=now,
                        absolute_expires_at=absolute,
                    )
                    repo.insert_refresh_token(
                        conn,
                        token_hash=hash_refresh_token(token),
                        session_id=session_id,
                        parent_id=None,
                        issued_at=now,
                        expires_at=min(now + settings.refresh_idle_ttl, absolute),
                    )
                    tokens.append(token)
        return tokens
    finally:
        service.db.close()


# --- servers -----------------------------------------------------------------------


@dataclass
class Server:
    """A server process tree we started; ``url`` once it answers /healthz."""

    stack: str  # "uvicorn" | "granian" | "serve"
    workers: int
    env: dict[str, str]
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        target = "freshtoken.server.app:create_app"
        host, port, workers = "127.0.0.1", str(self.port), str(self.workers)
        if self.stack == "uvicorn":
            return [
                sys.executable, "-m", "uvicorn", target, "--factory", "--host", host,
                "--port", port, "--workers", workers, "--no-access-log",
                "--log-level", "warning", *self.extra_args,
            ]  # fmt: skip
        if self.stack == "granian":
            return [
                sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
                "--host", host, "--port", port, "--workers", workers, "--no-access-log",
                "--log-level", "warning", "--no-ws", *self.extra_args, target,
            ]  # fmt: skip
        if self.stack == "serve":
            return [
                sys.executable, "-m", "freshtoken.cli", "serve", "--host", host,
                "--port", port, "--workers", workers, *self.extra_args,
            ]  # fmt: skip
        raise ValueError(self.stack)

    def start(self, timeout: float = 60.0) -> Server:
        self.port = self.port or free_port()
        self.env.setdefault("FRESHTOKEN_ISSUER", self.url)
        fd, name = tempfile.mkstemp(prefix=f"freshtoken-{self.stack}-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.env,
                cwd=str(ROOT),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: we can stop all it forked
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.stack} exited early:\n{self.log_tail()}")
            if self._healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.stack} did not answer within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def cpu_seconds(self) -> float:
        """User + system CPU time of every process in the server's process group
        (master and workers): divided by requests, a figure that other load on the
        machine barely moves."""
        if self.proc is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
            if int(fields[2]) == self.proc.pid:
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def log_tail(self, n: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        pgid = proc.pid  # start_new_session: the group id is our child's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=5)
        # Workers of the group that outlived their master.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- wrk ---------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    error_detail: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "errors": self.errors,
            "error_detail": self.error_detail,
        }


def run_wrk(
    url: str,
    *,
    script: Path,
    script_args: list[str] | None = None,
    connections: int,
    seconds: float,
    threads: int = 2,
) -> LoadResult:
    """Closed-loop load: ``connections`` connections, each one request in flight."""
    threads = max(1, min(threads, connections))
    cmd = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    if script_args:
        cmd += ["--", *script_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    report = None
    for line in proc.stdout.splitlines():
        if line.startswith("WRKJSON "):
            report = json.loads(line[len("WRKJSON ") :])
    if proc.returncode != 0 or report is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    detail = {k: int(v) for k, v in report["errors"].items() if v}
    seconds_run = report["duration_us"] / 1e6
    return LoadResult(
        requests=int(report["requests"]),
        seconds=seconds_run,
        rps=report["requests"] / seconds_run if seconds_run else 0.0,
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        errors=sum(detail.values()),
        error_detail=detail,
    )


def write_token_files(tokens: list[str], threads: int, directory: Path) -> str:
    """Split tokens round-robin into ``<stem>.<thread>.txt``; returns the stem for wrk."""
    stem = directory / "tokens"
    for t in range(threads):
        (directory / f"tokens.{t}.txt").write_text("\n".join(tokens[t::threads]) + "\n")
    return str(stem)


def cpu_count() -> int:
    return os.cpu_count() or 1
