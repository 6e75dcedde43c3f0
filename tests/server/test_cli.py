"""The ``freshtoken`` command on a fresh database: every command migrates on first use."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from freshtoken.cli import app
from freshtoken.server.app import build_service
from freshtoken.server.service import TokenService

from .helpers import FAST_PASSWORDS, SECRET_KEY, live_tokens, make_settings


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("FRESHTOKEN_DATABASE_URL", url)
    monkeypatch.setenv("FRESHTOKEN_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("COLUMNS", "250")  # rich tables unwrapped
    for name, value in FAST_PASSWORDS.items():
        monkeypatch.setenv(f"FRESHTOKEN_{name.upper()}", str(value))
    return url


def cli(*args: str, stdin: str | None = None, code: int = 0) -> Any:
    result = CliRunner().invoke(app, list(args), input=stdin)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    if code == 0:
        assert result.exception is None
    else:
        assert "Traceback" not in result.output
    return result


def service_on(db_url: str) -> TokenService:
    svc = build_service(make_settings(db_url))
    svc.reload_keys()
    return svc


def test_db_upgrade_on_a_fresh_database(db_url: str, tmp_path: Path) -> None:
    assert not (tmp_path / "cli.db").exists()
    result = cli("db", "upgrade")
    assert "newest schema" in result.output
    con = sqlite3.connect(tmp_path / "cli.db")
    tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    keys = con.execute("SELECT COUNT(*) FROM signing_keys").fetchone()[0]
    con.close()
    assert {
        "users",
        "clients",
        "sessions",
        "refresh_tokens",
        "signing_keys",
        "audit_events",
    } <= tables
    assert keys == 1
    cli("db", "upgrade")  # again: nothing to do, still fine


def test_users_add_list_passwd_remove(db_url: str) -> None:
    result = cli("users", "add", "alice", "--password-stdin", stdin="first-password\n")
    assert "created user alice" in result.output
    listed = cli("users", "list").output
    assert "alice" in listed and "first-password" not in listed

    svc = service_on(db_url)
    try:
        assert svc.login(username="alice", password="first-password").refresh_token
        cli("users", "passwd", "alice", "--password-stdin", stdin="second-password\n")
        assert svc.login(username="alice", password="second-password").refresh_token
        cli("users", "add", "alice", "--password-stdin", stdin="x\n", code=1)
        session = svc.login(username="alice", password="second-password")
        assert "removed user alice" in cli("users", "remove", "alice").output
        assert live_tokens(svc.db, session.session_id or "") == []
        assert "alice" not in cli("users", "list").output
    finally:
        svc.db.close()


def test_passwords_are_never_taken_from_argv(db_url: str) -> None:
    result = cli("users", "add", "bob", "hunter2-in-argv", code=2)
    assert "unexpected extra argument" in result.output.lower()
    result = cli("users", "add", "bob", "--password", "hunter2-in-argv", code=2)
    assert "no such option" in result.output.lower()
    cli("users", "passwd", "bob", "hunter2-in-argv", code=2)
    assert "bob" not in cli("users", "list").output


def test_cli_errors_are_clear(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        (("users", "add", "carol", "--password-stdin"), "\n", "empty password"),
        (("users", "remove", "ghost"), None, "no user named 'ghost'"),
        (("users", "passwd", "ghost", "--password-stdin"), "pw\n", "no user named 'ghost'"),
        (("sessions", "revoke", "nope"), None, "no live session 'nope'"),
        (("keys", "rotate", "--alg", "HS256"), None, "unsupported signing algorithm"),
        (("clients", "add", "m2m", "--grant", "client_credentials"), None, "confidential"),
        (("clients", "add", "x", "--grant", "implicit"), None, "unknown grant types"),
        (("clients", "add", "default"), None, "already exists"),
    ]
    for args, stdin, message in cases:
        result = cli(*args, stdin=stdin, code=1)
        assert "error:" in result.output and message in result.output, (args, result.output)

    monkeypatch.setenv("FRESHTOKEN_SECRET_KEY", "too-short")
    assert "at least 32" in cli("users", "list", code=1).output
    monkeypatch.setenv("FRESHTOKEN_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("FRESHTOKEN_DATABASE_URL", "mysql://localhost/x")
    assert "unsupported database" in cli("users", "list", code=1).output
    monkeypatch.setenv("FRESHTOKEN_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert "cannot open the database" in cli("db", "upgrade", code=1).output


def test_clients_add_and_list(db_url: str) -> None:
    cli(
        "clients",
        "add",
        "spa",
        "--grant",
        "password",
        "--grant",
        "refresh_token",
        "--scope",
        "read",
    )
    result = cli("clients", "add", "m2m", "--confidential", "--grant", "client_credentials")
    secret = result.stdout.strip().splitlines()[-1]
    assert len(secret) >= 40
    listed = cli("clients", "list").output
    assert "spa" in listed and "m2m" in listed and "confidential" in listed and "public" in listed
    assert secret not in listed  # shown once, never again
    svc = service_on(db_url)
    try:
        issued = svc.client_credentials(client_id="m2m", client_secret=secret)
        assert issued.access_token
    finally:
        svc.db.close()


def test_keys_rotate_and_list(db_url: str) -> None:
    first = cli("keys", "list").output
    assert "ES256" in first
    result = cli("keys", "rotate", "--alg", "Ed25519")
    match = re.search(r"new signing key ([0-9a-f]{16})", result.output)
    assert match is not None, result.output
    kid = match.group(1)
    listed = cli("keys", "list").output
    assert kid in listed and "Ed25519" in listed and "ES256" in listed
    assert "PRIVATE" not in listed
    assert "signing_key_rotated" in cli("audit", "tail").output


def test_sessions_list_revoke_and_audit_tail(db_url: str) -> None:
    cli("users", "add", "alice", "--password-stdin", stdin="pw-alice\n")
    svc = service_on(db_url)
    try:
        session = svc.login(username="alice", password="pw-alice", ip="10.0.0.1")
        sid = session.session_id or ""
        assert sid in cli("sessions", "list").output
        assert sid in cli("sessions", "list", "--user", "alice").output
        assert sid not in cli("sessions", "list", "--user", "nobody").output
        assert f"revoked session {sid}" in cli("sessions", "revoke", sid).output
        assert live_tokens(svc.db, sid) == []
        assert sid not in cli("sessions", "list").output
        ended = cli("sessions", "list", "--all").output
        assert sid in ended and "(admin)" in ended
        cli("sessions", "revoke", sid, code=1)  # already ended
    finally:
        svc.db.close()

    lines = cli("audit", "tail", "--json").stdout.strip().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events][-2:] == ["login_succeeded", "session_revoked"]
    assert events[-2]["ip"] == "10.0.0.1"
    only = cli("audit", "tail", "--json", "--event", "session_revoked", "-n", "5").stdout
    assert [json.loads(line)["session_id"] for line in only.strip().splitlines()] == [sid]
    table = cli("audit", "tail", "-n", "1").output
    assert "session_revoked" in table and "login_succeeded" not in table


def test_db_prune(db_url: str) -> None:
    """The retention command; its rules are tested in test_retention.py."""
    cli("users", "add", "alice", "--password-stdin", stdin="pw-alice\n")
    svc = service_on(db_url)
    try:
        sid = svc.login(username="alice", password="pw-alice").session_id or ""
        svc.revoke_session(sid)
    finally:
        svc.db.close()
    kept = cli("db", "prune").output
    assert "deleted 0 ended sessions, 0 refresh tokens, 0 audit events" in kept
    pruned = cli("db", "prune", "--ended-days", "0", "--audit-days", "0").output
    assert "deleted 1 ended sessions, 1 refresh tokens" in pruned
    assert sid not in cli("sessions", "list", "--all").output
    cli("db", "prune", "--ended-days", "-1", code=2)  # a clear usage error


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_serve_and_a_real_login_through_subprocesses(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    freshtoken = [sys.executable, "-m", "freshtoken.cli"]
    added = subprocess.run(
        [*freshtoken, "users", "add", "dave", "--password-stdin"],
        input="dave-password\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    assert "dave-password" not in added.stdout + added.stderr

    port = free_port()
    server = subprocess.Popen(
        [*freshtoken, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                health = httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "freshtoken serve did not come up"
                time.sleep(0.1)  # waiting for a real process to bind its port
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert httpx.get(base + "/readyz").status_code == 200
        token = httpx.post(
            base + "/oauth/token",
            data={
                "grant_type": "password",
                "username": "dave",
                "password": "dave-password",
                "client_id": "default",
            },
        )
        assert token.status_code == 200
        meta = httpx.get(base + "/.well-known/oauth-authorization-server").json()
        assert meta["issuer"] == base
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the exit status tells it.
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert base in output
    assert "dave-password" not in output


def test_the_console_script_is_installed(db_url: str) -> None:
    result = subprocess.run(
        ["freshtoken", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    for command in ("serve", "users", "clients", "keys", "sessions", "audit", "db"):
        assert command in result.stdout
