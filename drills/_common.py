"""What the drills share: a real server process, databases, small helpers."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2

PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
PROTOCOL = "freshtoken.server.protocol:LimitedHttpToolsProtocol"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, randomly named PostgreSQL database, dropped afterwards."""
    import psycopg

    name = f"freshtoken_drill_{secrets.token_hex(6)}"
    conninfo = f"host={PG[0]} port={PG[1]} user=postgres dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG[0]}:{PG[1]}/{name}"
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'freshtoken.db'}"
    elif backend == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        raise ValueError(f"unknown backend {backend!r}")


def server_settings(database_url: str, port: int, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "database_url": database_url,
        "issuer": f"http://127.0.0.1:{port}",
        "secret_key": secrets.token_urlsafe(48),
        "ratelimit_enabled": False,
        "password_time_cost": 1,
        "password_memory_kib": 8 * 1024,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return values


def prepare(settings: dict[str, Any], users: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Migrate, create users, log each in (no HTTP); returns the token answers."""
    from freshtoken.server.app import build_service
    from freshtoken.server.settings import Settings

    service = build_service(Settings(_env_file=None, **settings))  # type: ignore[call-arg]
    try:
        service.bootstrap()
        answers = []
        for username, password in users:
            service.create_user(username, password)
            answers.append(service.login(username=username, password=password).to_json())
        return answers
    finally:
        service.db.close()


def service_for(settings: dict[str, Any]) -> Any:
    from freshtoken.server.app import build_service
    from freshtoken.server.settings import Settings

    return build_service(Settings(_env_file=None, **settings))  # type: ignore[call-arg]


class ServerProcess:
    """``uvicorn freshtoken.server.app:create_app`` in a child process (as ``freshtoken serve``)."""

    def __init__(self, settings: dict[str, Any], port: int, log: Path | None = None) -> None:
        self.settings = settings
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ}
        env.update({f"FRESHTOKEN_{k.upper()}": str(v) for k, v in self.settings.items()})
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "freshtoken.server.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--http",
                PROTOCOL,
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            stdout=out,
            stderr=out,
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}")
            try:
                if httpx2.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, in-flight requests die with it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def print_figures(title: str, figures: dict[str, Any]) -> None:
    print(f"== drill: {title}")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"  {key.ljust(width)}  {value}")
