"""A small cluster for the scale-out tests: real ``freshtoken serve`` processes on
ephemeral loopback ports, sharing one PostgreSQL database and one Redis database.

The cluster is module-scoped (starting a server costs a few seconds); each test
uses its own users and sessions, so tests do not depend on each other.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service_fixtures import temporary_postgres_database, temporary_redis_database

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 45.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        # start_new_session=True: the group id is the pid of the process we started,
        # so this reaches its uvicorn workers and nothing else.
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Cluster:
    env: dict[str, str]
    database_url: str
    redis_url: str
    servers: list[ServerProcess] = field(default_factory=list)
    _service: Any = None

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "freshtoken.cli", *args],
            env=self.env,
            cwd=str(ROOT),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    @property
    def service(self) -> Any:
        """A TokenService on the shared database, for fast setup (users, sessions)."""
        if self._service is None:
            from freshtoken.server.app import build_service
            from freshtoken.server.settings import Settings

            self._service = build_service(
                Settings(
                    database_url=self.database_url,
                    secret_key=self.env["FRESHTOKEN_SECRET_KEY"],
                    ratelimit_enabled=False,
                )
            )
            self._service.reload_keys()
        return self._service

    def start_server(self, name: str, *, workers: int = 1) -> ServerProcess:
        port = free_port()
        env = dict(self.env, FRESHTOKEN_ISSUER="http://freshtoken.test")
        fd, log_name = tempfile.mkstemp(prefix=f"freshtoken-scaleout-{name}-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "freshtoken.cli",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                ],
                env=env,
                cwd=str(ROOT),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = ServerProcess(name, port, proc, Path(log_name))
        self.servers.append(server)
        import httpx

        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server {name} exited:\n{server.log_text()}")
            try:
                if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server {name} did not become ready:\n{server.log_text()}")

    def close(self) -> None:
        for server in self.servers:
            server.stop()
            server.log.unlink(missing_ok=True)
        if self._service is not None:
            self._service.db.close()


@pytest.fixture(scope="module")
def shared_postgres(postgres_admin_url: str) -> Iterator[str]:
    with temporary_postgres_database("freshtoken_scaleout") as url:
        yield url


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[str]:
    """A Redis URL on a random DB number, emptied before and after; the servers also
    use their own key prefix, so nothing else in that DB is counted."""
    with temporary_redis_database() as url:
        yield url


LOGIN_LIMIT_PER_USERNAME = 6


@pytest.fixture(scope="module")
def cluster(shared_postgres: str, shared_redis: str) -> Iterator[Cluster]:
    """Server A: ``freshtoken serve --workers 2``; server B: ``freshtoken serve``.
    Three processes, one PostgreSQL database, one Redis, one secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHTOKEN_")}
    env.update(
        {
            "FRESHTOKEN_DATABASE_URL": shared_postgres,
            "FRESHTOKEN_SECRET_KEY": secrets.token_urlsafe(48),
            "FRESHTOKEN_RATELIMIT_ENABLED": "true",
            "FRESHTOKEN_RATELIMIT_STORAGE_URL": shared_redis,
            "FRESHTOKEN_RATELIMIT_LOGIN_PER_USERNAME": f"{LOGIN_LIMIT_PER_USERNAME}/minute",
            "FRESHTOKEN_KEY_RELOAD_SECONDS": "0.5",
            # A rotated key is published at once and signs this long after (default 20 s).
            "FRESHTOKEN_KEY_ACTIVATION_DELAY": "2",
            "FRESHTOKEN_LOG_LEVEL": "WARNING",
            "FRESHTOKEN_DB_POOL_SIZE": "4",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")) if p
            ),
        }
    )
    c = Cluster(env=env, database_url=shared_postgres, redis_url=shared_redis)
    try:
        # Migrate and create the first key once, as a deployment would (`db upgrade`).
        done = c.cli("db", "upgrade")
        assert done.returncode == 0, done.stdout + done.stderr
        c.start_server("a", workers=2)
        c.start_server("b")
        yield c
    finally:
        c.close()
