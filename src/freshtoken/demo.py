"""``freshtoken demo``: a guided tour of the client against a real server, in one command.

It starts a server in this process on a free port (SQLite in a temporary folder,
5-second access tokens), creates a demo user, and narrates what happens while a
client works: login, calls, the access token expiring, 20 concurrent calls making
exactly one refresh, rotation, a replayed old refresh token ending the session
(reuse detection), and the session-expired hook firing.

Token values are never printed: only short fingerprints (SHA-256 prefixes).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from freshtoken._clock import Clock

TTL = 5
GRACE = 2


def _fp(token: str | None) -> str:
    if not token:
        return "-"
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def run_demo(console: Any = None, clock: Clock | None = None) -> int:
    """Run the tour; returns the exit code (0 when every step behaved as narrated).

    ``clock`` (a FakeClock) makes the waits instant, for tests.
    """
    from rich.console import Console

    out: Any = console or Console()
    # The narration is the output: keep library log lines (audit, warnings) off the screen.
    quiet = logging.getLogger("freshtoken")
    saved = (quiet.handlers[:], quiet.propagate)
    quiet.handlers[:] = [logging.NullHandler()]
    quiet.propagate = False
    try:
        return _tour(out, clock)
    finally:
        quiet.handlers[:], quiet.propagate = saved


def _tour(out: Any, clock: Clock | None) -> int:
    import httpx2
    from rich.panel import Panel
    from rich.table import Table

    from freshtoken.client import FileStore, OAuth2Refresher, RefreshEvent, TokenAuth, login
    from freshtoken.errors import SessionExpired
    from freshtoken.testing import LiveServer

    fake_clock: Any = clock

    def wait(seconds: float, why: str) -> None:
        if fake_clock is not None and hasattr(fake_clock, "advance"):
            fake_clock.advance(seconds)
            out.print(f"  [dim](fast-forwarded {seconds:.0f} s: {why})[/dim]")
            return
        with out.status(f"{why} …"):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(0.1)

    def step(title: str) -> None:
        out.print()
        out.rule(f"[bold cyan]{title}")

    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
        out.print(f"  {mark} {what}")
        if not ok:
            failures.append(what)

    out.print(
        Panel.fit(
            "[bold]freshtoken demo[/bold]\n"
            "A real auth server starts in this process; a Python client talks to it\n"
            "through [bold]TokenAuth[/bold], which refreshes tokens by itself.",
            border_style="cyan",
        )
    )
    with tempfile.TemporaryDirectory(prefix="freshtoken-demo-") as tmp:
        settings = {
            "access_token_ttl": TTL,
            "refresh_grace_seconds": GRACE,
            "database_url": f"sqlite:///{Path(tmp) / 'demo.db'}",
            "password_time_cost": 1,
            "password_memory_kib": 8 * 1024,
        }
        with LiveServer(settings=settings, clock=clock) as srv:
            srv.create_user("demo", "demo-password")
            out.print(
                f"Server: [bold]{srv.url}[/bold]  (SQLite in {tmp}, access tokens live {TTL} s)"
            )
            out.print("User:   [bold]demo[/bold] / demo-password")

            step("1. Log in")
            store = FileStore(Path(tmp) / "tokens.json")
            tokens = login(srv.token_url, "demo", "demo-password", store=store)
            out.print(
                f"  password grant → access token {_fp(tokens.access_token)}…, "
                f"refresh token {_fp(tokens.refresh_token)}… (fingerprints only)"
            )
            out.print(f"  saved to {store.path} (mode 0600)")

            events: list[RefreshEvent] = []
            expired_reasons: list[str] = []

            def on_event(event: RefreshEvent) -> None:
                events.append(event)
                if event.kind == "refresh_succeeded":
                    out.print(
                        f"  [yellow]↻ refresh[/yellow] → generation {event.generation}, "
                        f"{event.waiters} request(s) waited for it instead of refreshing"
                    )

            def on_session_expired(reason: str) -> None:
                expired_reasons.append(reason)
                out.print(f"  [bold red]on_session_expired fired:[/bold red] {reason}")

            auth = TokenAuth(
                OAuth2Refresher(srv.token_url),
                store,
                leeway=1,
                on_event=on_event,
                on_session_expired=on_session_expired,
                clock=clock,
            )
            me = srv.url + "/api/me"
            with httpx2.Client(auth=auth, timeout=30) as http:
                step("2. Calls with a fresh token")
                for _ in range(2):
                    r = http.get(me)
                    out.print(
                        f"  GET /api/me → {r.status_code} (sub {r.json().get('sub', '?')[:8]}…)"
                    )
                check(srv.stats["refresh_rotated"] == 0, "no refresh needed")

                step("3. The access token expires")
                wait(TTL + 0.5, f"waiting {TTL} s for the access token to expire")
                rotated_before = srv.stats["refresh_rotated"]

                step("4. 20 concurrent calls on the expired token")
                with ThreadPoolExecutor(20) as pool:
                    statuses = list(pool.map(lambda _: http.get(me).status_code, range(20)))
                table = Table("calls", "answers", "refreshes the server saw")
                table.add_row(
                    "20",
                    ", ".join(f"{s} x{statuses.count(s)}" for s in sorted(set(statuses))),
                    str(srv.stats["refresh_rotated"] - rotated_before),
                )
                out.print(table)
                check(statuses == [200] * 20, "all 20 calls succeeded")
                check(
                    srv.stats["refresh_rotated"] - rotated_before == 1,
                    "exactly one refresh (single-flight)",
                )

                step("5. Rotation")
                current = store.load()
                assert current is not None
                out.print(
                    f"  refresh token {_fp(tokens.refresh_token)}… was spent; the store now "
                    f"holds {_fp(current.refresh_token)}… (generation {current.generation})"
                )
                check(current.refresh_token != tokens.refresh_token, "the refresh token rotated")

                step("6. Someone replays the old refresh token")
                wait(GRACE + 0.5, f"waiting past the {GRACE} s grace window")
                replay = httpx2.post(
                    srv.token_url,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": tokens.refresh_token or "",
                        "client_id": "default",
                    },
                )
                out.print(
                    f"  POST /oauth/token with the old token → {replay.status_code} "
                    f"{replay.json().get('error')}"
                )
                check(srv.stats["refresh_reuse"] == 1, "reuse detected: the whole session revoked")

                step("7. The client finds out")
                wait(TTL + 0.5, "waiting for the current access token to expire")
                try:
                    http.get(me)
                    check(False, "the session should have ended")
                except SessionExpired as exc:
                    out.print(f"  the call raised SessionExpired: {exc.reason}")
                check(len(expired_reasons) == 1, "on_session_expired fired exactly once")
                check(store.load() is None, "the token store was cleared")
            auth.close()

    out.print()
    if failures:
        out.print(f"[bold red]{len(failures)} step(s) did not behave as expected.[/bold red]")
        return 1
    out.print(
        Panel.fit(
            "That is the whole client:\n"
            "  auth = freshtoken.TokenAuth(refresher=..., store=..., on_session_expired=...)\n"
            "  httpx2.Client(auth=auth)  ·  httpx.AsyncClient(auth=auth)  ·  "
            "requests.Session().auth = auth\n"
            "See docs/client.md.",
            border_style="green",
        )
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_demo())
