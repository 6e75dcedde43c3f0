"""Drill 4 — lost response: the refresh answer is dropped on its way back.

A FaultProxy between the freshtoken client (``TokenAuth`` on httpx2) and the
server forwards the refresh request — the server rotates and commits — then
throws the answer away and resets the connection. The client sees a network
error, keeps its tokens and retries with the same refresh token:

* with the grace window (default 10 s) the retry gets **the same successor**
  and the session survives;
* with ``FRESHTOKEN_REFRESH_GRACE_SECONDS=0`` the retry is indistinguishable
  from replaying a stolen token: the session is revoked (reuse), as documented.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx2

from drills._common import print_figures
from freshtoken.client import MemoryStore, OAuth2Refresher, Retry, TokenAuth, TokenSet
from freshtoken.errors import FreshtokenError
from freshtoken.testing import LiveServer
from freshtoken.testing._proxy import FaultProxy

MATCH = b"POST /oauth/token"


def run(*, grace: float = 10.0, sessions: int = 1, drops_per_session: int = 1) -> dict[str, Any]:
    settings = {
        "refresh_grace_seconds": grace,
        "password_time_cost": 1,
        "password_memory_kib": 8 * 1024,
    }
    expired: list[str] = []
    outcomes = {"api_ok": 0, "api_failed": 0, "refreshes_client": 0}
    with LiveServer(settings=settings) as srv, FaultProxy("127.0.0.1", srv.port) as proxy:
        for s in range(sessions):
            srv.create_user(f"lost{s}", "pw")
            answer = srv.login(f"lost{s}", "pw")

            def on_event(event: Any) -> None:
                if event.kind == "refresh_succeeded":
                    outcomes["refreshes_client"] += 1

            auth = TokenAuth(
                refresher=OAuth2Refresher(proxy.url + "/oauth/token", client_id="default"),
                store=MemoryStore(
                    TokenSet(
                        access_token=answer["access_token"],
                        refresh_token=answer["refresh_token"],
                        expires_at=time.time() - 1,  # expired: the next request refreshes
                    )
                ),
                retry=Retry(attempts=5, base_delay=0.05, max_delay=0.5),
                on_event=on_event,
                on_session_expired=lambda reason: expired.append(reason),
            )
            with httpx2.Client(auth=auth, timeout=10) as http:
                for _ in range(drops_per_session):
                    proxy.drop_responses(1, match=MATCH)
                    try:
                        ok = http.get(proxy.url + "/api/me").status_code == 200
                    except FreshtokenError:
                        ok = False
                    outcomes["api_ok" if ok else "api_failed"] += 1
                    if not ok:
                        break
                    # Expire the access token again so the next round refreshes.
                    tokens = auth.tokens
                    assert tokens is not None
                    auth.set_tokens(
                        TokenSet(
                            access_token=tokens.access_token,
                            refresh_token=tokens.refresh_token,
                            expires_at=time.time() - 1,
                            generation=tokens.generation,
                        )
                    )
                # One more ordinary refresh proves the session is (or is not) alive.
                if not expired:
                    try:
                        ok = http.get(proxy.url + "/api/me").status_code == 200
                    except FreshtokenError:
                        ok = False
                    outcomes["api_ok" if ok else "api_failed"] += 1
        stats = dict(srv.stats)
        dropped = proxy.stats["dropped"]
    return {
        "grace window s": grace,
        "sessions": sessions,
        "responses dropped": dropped,
        "refreshes rotated (server)": stats.get("refresh_rotated", 0),
        "retries answered from the grace window": stats.get("refresh_grace", 0),
        "reuse detected (server)": stats.get("refresh_reuse", 0),
        "API requests ok": outcomes["api_ok"],
        "API requests failed": outcomes["api_failed"],
        "sessions lost": len(expired),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills lost_response", description=__doc__)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--drops", type=int, default=10, help="dropped answers per session")
    args = parser.parse_args(argv)
    with_grace = run(grace=10.0, sessions=args.sessions, drops_per_session=args.drops)
    print_figures("lost response (grace 10 s)", with_grace)
    without = run(grace=0.0, sessions=1, drops_per_session=1)
    print_figures("lost response (grace 0: documented revocation)", without)
    ok = (
        with_grace["sessions lost"] == 0
        and with_grace["API requests failed"] == 0
        and without["sessions lost"] == 1
    )
    return 0 if ok else 1
