"""Drill 1 — crash: SIGKILL a real server process under refresh load, restart it.

Client threads refresh their sessions in a loop (each one holds exactly the last
refresh token whose response reached it). The server process is killed with
SIGKILL at random moments and restarted on the same port. A client whose
request died with the server retries the same token (the way the freshtoken
client does); if the server had committed the rotation before it died, that
retry lands in the grace window and gets the same successor.

Afterwards every session's last received token must still work (or have been
superseded by one that does), and no session may have two live tokens.

The guarantee holds while each outage is shorter than the grace window (10 s):
a client that gets its answer back only after the window presents a token
whose rotation the server already committed — indistinguishable from replay,
so the session is (correctly) revoked. Restart faster than the grace window, or
run more than one replica.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2

from drills._common import (
    ServerProcess,
    database,
    free_port,
    prepare,
    print_figures,
    server_settings,
    service_for,
)
from freshtoken.server import audit
from freshtoken.server.storage import repository as repo
from freshtoken.server.tokens import hash_refresh_token


def run(
    backend: str = "sqlite",
    *,
    clients: int = 6,
    duration: float = 20.0,
    kills: int = 3,
    seed: int | None = None,
    min_gap: float = 2.0,
) -> dict[str, Any]:
    rng = random.Random(seed)
    with (
        tempfile.TemporaryDirectory(prefix="freshtoken-drill-") as tmp,
        database(backend, Path(tmp)) as url,
    ):
        port = free_port()
        settings = server_settings(url, port, refresh_grace_seconds=10, access_token_ttl=300)
        users = [(f"crash{i}", f"pw-{i}") for i in range(clients)]
        answers = prepare(settings, users)
        server = ServerProcess(settings, port, Path(tmp) / "server.log")
        server.start()
        token_url = server.url + "/oauth/token"
        last: list[str] = [a["refresh_token"] for a in answers]
        counts = {"requests": 0, "rotations_seen": 0, "transient_errors": 0, "lost": 0}
        lock = threading.Lock()
        stop = threading.Event()

        def client(i: int) -> None:
            with httpx2.Client(timeout=5) as http:
                while not stop.is_set():
                    try:
                        r = http.post(
                            token_url,
                            data={
                                "grant_type": "refresh_token",
                                "refresh_token": last[i],
                                "client_id": "default",
                            },
                        )
                    except httpx2.HTTPError:
                        with lock:
                            counts["requests"] += 1
                            counts["transient_errors"] += 1
                        stop.wait(0.05)  # the server is down or died mid-request: retry
                        continue
                    with lock:
                        counts["requests"] += 1
                    if r.status_code == 200:
                        last[i] = r.json()["refresh_token"]
                        with lock:
                            counts["rotations_seen"] += 1
                    elif r.status_code >= 500:
                        with lock:
                            counts["transient_errors"] += 1
                        stop.wait(0.05)
                    else:
                        with lock:
                            counts["lost"] += 1  # the session is gone: must never happen
                        return

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        kill_times = sorted(rng.uniform(0.15, 0.85) * duration for _ in range(kills))
        started = time.monotonic()
        crashes = 0
        restart_seconds = []
        try:
            for at in kill_times:
                # Clients must get a moment with the restarted server before the next
                # kill: two back-to-back outages longer than the grace window together
                # would (correctly) turn a lost answer's retry into reuse.
                time.sleep(max(min_gap, started + at - time.monotonic()))
                server.kill()
                crashes += 1
                t0 = time.monotonic()
                server.start()
                restart_seconds.append(time.monotonic() - t0)
            time.sleep(max(0.0, started + duration - time.monotonic()))
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        # Every last received token still works (rotating it, or — if its
        # rotation was committed but the answer lost — the grace retry).
        working = 0
        final: list[str] = []
        with httpx2.Client(timeout=5) as http:
            for token in last:
                r = http.post(
                    token_url,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": token,
                        "client_id": "default",
                    },
                )
                if r.status_code == 200:
                    working += 1
                    final.append(r.json()["refresh_token"])
        server.stop()
        service = service_for(settings)
        two_live = 0
        wrong_live = 0
        try:
            with service.db.transaction() as conn:
                grace = repo.count_audit_events(conn, audit.REFRESH_GRACE)
                reuse = repo.count_audit_events(conn, audit.REUSE_DETECTED)
                rotated = repo.count_audit_events(conn, audit.REFRESH_ROTATED)
                now = service.clock.now()
                for token in final:
                    record = repo.find_refresh_token(conn, hash_refresh_token(token))
                    live = repo.live_tokens(conn, record.session_id, now) if record else []
                    two_live += len(live) > 1
                    wrong_live += not (
                        len(live) == 1 and bytes(live[0].token_hash) == hash_refresh_token(token)
                    )
        finally:
            service.db.close()
    return {
        "backend": backend,
        "clients (sessions)": clients,
        "duration s": duration,
        "requests sent": counts["requests"],
        "rotations answered": counts["rotations_seen"],
        "rotations committed": rotated,
        "crashes survived (SIGKILL)": crashes,
        "downtime per crash s (max)": round(max(restart_seconds, default=0.0), 2),
        "grace window s": settings["refresh_grace_seconds"],
        "transient errors ridden out": counts["transient_errors"],
        "grace retries (answer lost in crash)": grace,
        "reuse detected": reuse,
        "refreshes refused during the run": counts["lost"],
        "sessions lost": clients - working,
        "sessions with two live tokens": two_live,
        "sessions whose live token is not the client's": wrong_live,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills crash", description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--kills", type=int, default=8)
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    ok = True
    for backend in backends:
        figures = run(backend, clients=args.clients, duration=args.duration, kills=args.kills)
        print_figures(f"crash ({backend})", figures)
        ok &= figures["sessions lost"] == 0 and figures["sessions with two live tokens"] == 0
    return 0 if ok else 1
