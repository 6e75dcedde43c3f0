"""The ``freshtoken`` command: run the server and administer it.

Every command reads the same ``FRESHTOKEN_*`` settings as the server and
migrates the database on first use, so each one works on a fresh install.
Passwords and secrets are read from stdin or a prompt, never from argv (argv is
visible to every user of the machine through ``ps``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from freshtoken.errors import FreshtokenError

app = typer.Typer(
    help="freshtoken: access tokens and rotating refresh tokens, done right.",
    no_args_is_help=True,
    add_completion=False,
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
clients_app = typer.Typer(help="Manage OAuth clients.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage signing keys.", no_args_is_help=True)
sessions_app = typer.Typer(help="Inspect and revoke sessions.", no_args_is_help=True)
audit_app = typer.Typer(help="Read the audit log.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
for sub, name in (
    (users_app, "users"),
    (clients_app, "clients"),
    (keys_app, "keys"),
    (sessions_app, "sessions"),
    (audit_app, "audit"),
    (db_app, "db"),
):
    app.add_typer(sub, name=name)

out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _service() -> Any:
    """The TokenService on the configured database, migrated and bootstrapped."""
    from freshtoken.server.app import build_service
    from freshtoken.server.settings import Settings

    try:
        service = build_service(Settings())
        service.bootstrap()
    except FreshtokenError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:
        raise _fail(f"cannot open the database: {type(exc).__name__}: {exc}") from None
    return service


def _read_secret(prompt: str, use_stdin: bool) -> str:
    if use_stdin or not sys.stdin.isatty():
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    if not value:
        raise _fail("empty password")
    return value


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from freshtoken.server.exceptions import OAuthError

    try:
        return fn(*args, **kwargs)
    except OAuthError as exc:
        raise _fail(exc.description) from None
    except FreshtokenError as exc:
        raise _fail(str(exc)) from None


# --- serve ---------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    demo: Annotated[
        bool, typer.Option("--demo", help="Demo mode: 15 s access tokens, user demo/demo.")
    ] = False,
) -> None:
    """Run the authentication server (uvicorn)."""
    import uvicorn

    from freshtoken.server.settings import Settings

    if demo:
        os.environ["FRESHTOKEN_DEMO_MODE"] = "true"
        os.environ.setdefault("FRESHTOKEN_ACCESS_TOKEN_TTL", "15")
        # Small leeway so the demo's 401 → refresh → retry path shows within seconds.
        os.environ.setdefault("FRESHTOKEN_LEEWAY", "1")
    os.environ.setdefault("FRESHTOKEN_ISSUER", f"http://{_display_host(host)}:{port}")
    os.environ["FRESHTOKEN_CONFIGURE_LOGGING"] = "1"  # workers log audit lines to stderr
    try:
        settings = Settings()
        service = _service()  # migrate and create keys once, before workers start
        first_user = None if demo else _first_user(service, settings)
        service.db.close()
    except typer.Exit:
        raise
    except Exception as exc:
        raise _fail(str(exc)) from None
    base = settings.issuer
    out.print(f"[bold green]freshtoken[/] on [bold]{base}[/] ({workers} worker(s))")
    out.print(f"  database     {_redact(settings.database_url)}")
    if demo:
        out.print(f"  demo page    {base}/demo   [dim](log in as demo / demo)[/]")
    if first_user is not None:
        out.print(
            f"  first user   [bold]admin[/], password in [bold]{first_user}[/] "
            "(mode 0600; change it with `freshtoken users passwd admin`)"
        )
        out.print("  first token  in another terminal:")
        out.print(
            f"    curl -s {base}/oauth/token -d grant_type=password -d client_id=default "
            f"-d username=admin --data-urlencode password@{first_user}",
            soft_wrap=True,
        )
    else:
        out.print(
            f"  a token      curl -s {base}/oauth/token -d grant_type=password "
            "-d client_id=default -d username=USER --data-urlencode password=…",
            soft_wrap=True,
        )
    out.print(f"  discovery    {base}/.well-known/oauth-authorization-server")
    uvicorn.run(
        "freshtoken.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=True,
        timeout_keep_alive=5,
        # Caps the request head at 64 KiB (431) and its arrival at 10 s (408).
        http="freshtoken.server.protocol:LimitedHttpToolsProtocol",
    )


def _first_user(service: Any, settings: Any) -> str | None:
    """On an empty database, create ``admin`` with a random password kept in a 0600
    file beside the database (never printed, never logged), so the very first
    token needs no setup."""
    from freshtoken.server.storage import repository as repo

    with service.db.transaction() as conn:
        if repo.list_users(conn):
            return None
    url = settings.database_url
    folder = (
        Path(url[len("sqlite:///") :]).expanduser().parent
        if url.startswith("sqlite:///")
        else Path()
    )
    path = folder / "freshtoken-admin-password"
    password = secrets.token_urlsafe(18)
    service.create_user("admin", password)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    return str(path)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@app.command()
def demo() -> None:
    """A guided tour in the terminal: a server, a client, refreshes, reuse detection."""
    from freshtoken.demo import run_demo

    raise typer.Exit(run_demo())


# --- users -----------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user (the password comes from a prompt or stdin, never argv)."""
    service = _service()
    password = _read_secret(f"Password for {username}", password_stdin)
    user_id = _run(service.create_user, username, password)
    out.print(f"created user [bold]{username}[/] ({user_id})")


@users_app.command("list")
def users_list() -> None:
    """List users."""
    from freshtoken.server.storage import repository as repo

    service = _service()
    with service.db.transaction() as conn:
        rows = repo.list_users(conn)
    table = Table("username", "id", "created", "disabled")
    for row in rows:
        table.add_row(row.username, row.id, _when(row.created_at), "yes" if row.disabled else "")
    out.print(table)


@users_app.command("remove")
def users_remove(username: str) -> None:
    """Delete a user and every session of theirs."""
    if not _run(_service().remove_user, username):
        raise _fail(f"no user named {username!r}")
    out.print(f"removed user [bold]{username}[/]")


@users_app.command("passwd")
def users_passwd(
    username: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Set a user's password."""
    service = _service()
    password = _read_secret(f"New password for {username}", password_stdin)
    if not _run(service.set_password, username, password):
        raise _fail(f"no user named {username!r}")
    out.print(f"password of [bold]{username}[/] changed")


# --- clients ---------------------------------------------------------------------------


@clients_app.command("add")
def clients_add(
    client_id: str,
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--grant", help="Allowed grant (repeat): password, refresh_token, client_credentials."
        ),
    ] = None,
    scope: Annotated[
        str, typer.Option(help="Scopes the client may ask for.")
    ] = "openid profile read write",
    confidential: Annotated[
        bool, typer.Option("--confidential", help="Generate a client secret (printed once).")
    ] = False,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Register a client. Confidential clients get a generated secret, shown once."""
    grants = tuple(grant or ("password", "refresh_token"))
    secret = secrets.token_urlsafe(32) if confidential else None
    _run(
        _service().create_client,
        client_id,
        secret=secret,
        grant_types=grants,
        scope=scope,
        name=name,
    )
    out.print(f"created client [bold]{client_id}[/] grants={' '.join(grants)} scope={scope!r}")
    if secret:
        out.print("client secret (store it now, it is not shown again):")
        print(secret)


@clients_app.command("list")
def clients_list() -> None:
    """List clients."""
    from freshtoken.server.storage import repository as repo

    service = _service()
    with service.db.transaction() as conn:
        rows = repo.list_clients(conn)
    table = Table("client_id", "type", "grants", "scope", "created")
    for row in rows:
        kind = "confidential" if row.secret_hash else "public"
        table.add_row(row.client_id, kind, row.grant_types, row.scope, _when(row.created_at))
    out.print(table)


# --- keys --------------------------------------------------------------------------------


@keys_app.command("rotate")
def keys_rotate(
    alg: Annotated[str | None, typer.Option(help="ES256, RS256 or Ed25519.")] = None,
) -> None:
    """New signing key; the old one stays published until its tokens have expired."""
    kid = _run(_service().rotate_signing_key, alg)
    from freshtoken.server.settings import Settings

    settings = Settings()
    out.print(
        f"new signing key [bold]{kid}[/]: published by every server within "
        f"{settings.key_reload_seconds:g} s, signing from "
        f"{settings.key_activation_delay:g} s from now"
    )


@keys_app.command("list")
def keys_list() -> None:
    """List signing keys (public parts only)."""
    service = _service()
    table = Table("kid", "alg", "created", "retired", "leaves JWKS")
    for key in service.keyring.all_keys():
        table.add_row(
            key.kid, key.alg, _when(key.created_at), _when(key.retired_at), _when(key.expires_at)
        )
    out.print(table)


# --- sessions ----------------------------------------------------------------------------


@sessions_app.command("list")
def sessions_list(
    user: Annotated[str | None, typer.Option(help="Only this username.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include ended sessions.")] = False,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """List sessions, newest first."""
    from freshtoken.server.storage import repository as repo

    service = _service()
    with service.db.transaction() as conn:
        rows = repo.list_sessions(
            conn, username=user, include_ended=all_, now=service.clock.now(), limit=limit
        )
    table = Table("session", "user", "client", "created", "expires", "revoked")
    for row in rows:
        revoked = f"{_when(row.revoked_at)} ({row.revoked_reason})" if row.revoked_at else ""
        table.add_row(
            row.id,
            row.username,
            row.client_id,
            _when(row.created_at),
            _when(row.absolute_expires_at),
            revoked,
        )
    out.print(table)


@sessions_app.command("revoke")
def sessions_revoke(session_id: str) -> None:
    """End a session: every refresh token in it stops working at once."""
    if not _run(_service().revoke_session, session_id, reason="admin"):
        raise _fail(f"no live session {session_id!r}")
    out.print(f"revoked session [bold]{session_id}[/]")


# --- audit ------------------------------------------------------------------------------


@audit_app.command("tail")
def audit_tail(
    n: Annotated[int, typer.Option("-n", min=1, help="How many events.")] = 20,
    event: Annotated[str | None, typer.Option(help="Only this event type.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The newest audit events."""
    from freshtoken.server.storage import repository as repo

    service = _service()
    with service.db.transaction() as conn:
        rows = repo.tail_audit_events(conn, n, event)
    if as_json:
        for row in rows:
            print(json.dumps({k: v for k, v in row._mapping.items() if v is not None}))
        return
    table = Table("at", "event", "user", "client", "session", "ip", "detail")
    for row in rows:
        table.add_row(
            _when(row.at),
            row.event,
            row.user_id or "",
            row.client_id or "",
            row.session_id or "",
            row.ip or "",
            row.detail or "",
        )
    out.print(table)


# --- db -----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations (every other command does this on first use too)."""
    service = _service()
    out.print(f"database is at the newest schema: {_redact(service.db.url)}")


@db_app.command("prune")
def db_prune(
    ended_days: Annotated[
        float, typer.Option(min=0, help="Delete sessions that ended more than this many days ago.")
    ] = 7,
    audit_days: Annotated[
        float, typer.Option(min=0, help="Delete audit events older than this many days.")
    ] = 90,
) -> None:
    """Retention: ended sessions with their refresh tokens, and old audit events.
    Run it daily (cron, a Kubernetes CronJob); it works in small batches."""
    sessions, tokens, events = _run(_service().prune, ended_days=ended_days, audit_days=audit_days)
    out.print(f"deleted {sessions} ended sessions, {tokens} refresh tokens, {events} audit events")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
