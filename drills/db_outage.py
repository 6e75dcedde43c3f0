"""Drill 2 — database outage: PostgreSQL becomes unreachable during load.

The server reaches PostgreSQL through a FaultProxy; the drill cuts it (every
connection reset, new ones refused) for a while and restores it. Clients are
the real freshtoken client (``TokenAuth`` on httpx2, access tokens of a few
seconds, so they refresh during the outage). Expected:

* refreshes answer ``503`` + ``Retry-After`` (never a token that was not stored);
* ``/readyz`` answers 503, ``/healthz`` stays 200;
* clients keep their sessions, back off and retry, and carry on when it returns:
  zero failed API requests, zero sessions lost.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import httpx2

from drills._common import PG, postgres_database, print_figures
from freshtoken.client import OAuth2Refresher, Retry, TokenAuth
from freshtoken.client import login as client_login
from freshtoken.errors import FreshtokenError
from freshtoken.testing import LiveServer
from freshtoken.testing._proxy import FaultProxy


def run(
    *,
    clients: int = 4,
    warmup: float = 3.0,
    outage: float = 4.0,
    after: float = 4.0,
    access_ttl: int = 2,
    rate: float = 10.0,
    database_url: str | None = None,
) -> dict[str, Any]:
    with FaultProxy(*PG) as proxy:
        if database_url is None:
            with postgres_database() as url:
                return _run(proxy, url, clients, warmup, outage, after, access_ttl, rate)
        return _run(proxy, database_url, clients, warmup, outage, after, access_ttl, rate)


def _via(proxy: FaultProxy, url: str) -> str:
    return url.replace(f"@{PG[0]}:{PG[1]}/", f"@{proxy.host}:{proxy.port}/")


def _run(
    proxy: FaultProxy,
    url: str,
    clients: int,
    warmup: float,
    outage: float,
    after: float,
    access_ttl: int,
    rate: float,
) -> dict[str, Any]:
    settings = {
        "access_token_ttl": access_ttl,
        "password_time_cost": 1,
        "password_memory_kib": 8 * 1024,
        "db_pool_size": 4,
    }
    counts: dict[str, int] = {"requests": 0, "ok": 0, "failed": 0, "refreshes": 0}
    counts |= {"refresh_retries": 0, "sessions_expired": 0}
    lock = threading.Lock()
    stop = threading.Event()
    during: dict[str, Any] = {}

    def bump(key: str) -> None:
        with lock:
            counts[key] += 1

    def on_event(event: Any) -> None:
        if event.kind == "refresh_succeeded":
            bump("refreshes")
        elif event.kind == "refresh_retrying":
            bump("refresh_retries")

    with LiveServer(settings=settings, database_url=_via(proxy, url)) as srv:
        for i in range(clients):
            srv.create_user(f"outage{i}", "pw")

        def client(i: int) -> None:
            auth = TokenAuth(
                refresher=OAuth2Refresher(srv.token_url, client_id="default"),
                leeway=0.5,
                # Patient enough to ride out the outage; honours Retry-After up to 2 s.
                retry=Retry(attempts=30, base_delay=0.1, max_delay=1.0, max_retry_after=2.0),
                on_event=on_event,
                on_session_expired=lambda reason: bump("sessions_expired"),
            )
            client_login(srv.token_url, f"outage{i}", "pw", store=auth)
            with httpx2.Client(auth=auth, timeout=10) as http:
                while not stop.is_set():
                    bump("requests")
                    try:
                        ok = http.get(srv.url + "/api/me").status_code == 200
                    except (httpx2.HTTPError, FreshtokenError):
                        ok = False
                    bump("ok" if ok else "failed")
                    stop.wait(1.0 / rate)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        time.sleep(warmup)
        refreshes_before = counts["refreshes"]
        proxy.cut()
        cut_at = time.monotonic()
        with httpx2.Client(base_url=srv.url, timeout=10) as probe:
            time.sleep(min(1.0, outage / 2))
            during["readyz"] = probe.get("/readyz").status_code
            during["healthz"] = probe.get("/healthz").status_code
            refresh = probe.post(
                "/oauth/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": "ftr_" + "A" * 43,
                    "client_id": "default",
                },
            )
            during["token endpoint"] = refresh.status_code
            during["retry-after"] = refresh.headers.get("retry-after")
            during["error"] = refresh.json().get("error")
            time.sleep(max(0.0, cut_at + outage - time.monotonic()))
            refreshes_during = counts["refreshes"] - refreshes_before
            proxy.restore()
            ready_again = None
            for _ in range(100):
                if probe.get("/readyz").status_code == 200:
                    ready_again = round(time.monotonic() - cut_at - outage, 2)
                    break
                time.sleep(0.05)
        time.sleep(after)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        stats = dict(srv.stats)
    return {
        "backend": "postgresql (through the fault proxy)",
        "clients (sessions)": clients,
        "access token ttl s": access_ttl,
        "outage s": outage,
        "outages ridden out": 1,
        "during outage: /readyz": during["readyz"],
        "during outage: /healthz": during["healthz"],
        "during outage: /oauth/token": f"{during['token endpoint']} {during['error']} "
        f"Retry-After={during['retry-after']}",
        "refreshes that succeeded during the outage": refreshes_during,
        "client refresh retries (backoff)": counts["refresh_retries"],
        "ready again after restore s": ready_again,
        "API requests": counts["requests"],
        "API requests failed": counts["failed"],
        "refreshes (client)": counts["refreshes"],
        "refreshes rotated (server)": stats.get("refresh_rotated", 0),
        "grace answers (server)": stats.get("refresh_grace", 0),
        "reuse detected (server)": stats.get("refresh_reuse", 0),
        "sessions lost": counts["sessions_expired"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills db_outage", description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--outage", type=float, default=15.0)
    parser.add_argument("--after", type=float, default=10.0)
    args = parser.parse_args(argv)
    figures = run(clients=args.clients, outage=args.outage, after=args.after, warmup=5.0)
    print_figures("database outage", figures)
    ok = figures["API requests failed"] == 0 and figures["sessions lost"] == 0
    return 0 if ok else 1
