"""Drill 5 — soak: several client processes at a steady rate for minutes against
a server process with short access tokens.

Each client process runs several sessions (``TokenAuth`` on httpx2, one thread
per session) calling ``/api/me`` at a fixed rate. Expected: zero failed
requests; one refresh per access-token expiry per session (proactive, no 401
round trips); the server's memory flat (RSS at start and end reported).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from drills._common import (
    ServerProcess,
    database,
    free_port,
    prepare,
    print_figures,
    server_settings,
)


def _client_process(
    url: str, answers: list[dict[str, Any]], rate: float, duration: float, leeway: float, out: Any
) -> None:
    import httpx2

    from freshtoken.client import MemoryStore, OAuth2Refresher, TokenAuth, TokenSet
    from freshtoken.errors import FreshtokenError

    results: list[dict[str, int]] = []
    lock = threading.Lock()

    def session(answer: dict[str, Any]) -> None:
        counts = {"requests": 0, "failed": 0, "refreshes": 0, "unauthorized": 0}

        def on_event(event: Any) -> None:
            if event.kind == "refresh_succeeded":
                counts["refreshes"] += 1

        auth = TokenAuth(
            refresher=OAuth2Refresher(url + "/oauth/token", client_id="default"),
            store=MemoryStore(
                TokenSet(
                    access_token=answer["access_token"],
                    refresh_token=answer["refresh_token"],
                    expires_at=time.time() + answer["expires_in"],
                )
            ),
            leeway=leeway,
            on_event=on_event,
        )
        interval = 1.0 / rate
        deadline = time.monotonic() + duration
        next_at = time.monotonic()
        with httpx2.Client(auth=auth, timeout=10) as http:
            while time.monotonic() < deadline:
                counts["requests"] += 1
                try:
                    status = http.get(url + "/api/me").status_code
                except (httpx2.HTTPError, FreshtokenError):
                    status = 0
                if status != 200:
                    counts["failed"] += 1
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
        with lock:
            results.append(counts)

    threads = [threading.Thread(target=session, args=(a,)) for a in answers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(results)


def run(
    backend: str = "sqlite",
    *,
    processes: int = 3,
    sessions_per_process: int = 4,
    rate: float = 5.0,
    duration: float = 180.0,
    access_ttl: int = 10,
    leeway: float = 2.0,
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="freshtoken-soak-") as tmp,
        database(backend, Path(tmp)) as url,
    ):
        port = free_port()
        settings = server_settings(url, port, access_token_ttl=access_ttl)
        total = processes * sessions_per_process
        answers = prepare(settings, [(f"soak{i}", "pw") for i in range(total)])
        server = ServerProcess(settings, port, Path(tmp) / "server.log")
        server.start()
        try:
            time.sleep(1.0)
            rss_start = server.rss_kib()
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            procs = [
                ctx.Process(
                    target=_client_process,
                    args=(
                        server.url,
                        answers[p * sessions_per_process : (p + 1) * sessions_per_process],
                        rate,
                        duration,
                        leeway,
                        queue,
                    ),
                )
                for p in range(processes)
            ]
            started = time.monotonic()
            for proc in procs:
                proc.start()
            rss_samples = [rss_start]
            while any(proc.is_alive() for proc in procs):
                time.sleep(5)
                if time.monotonic() - started > duration + 120:
                    break
                rss_samples.append(server.rss_kib())
            results: list[dict[str, int]] = []
            for _ in procs:
                results.extend(queue.get(timeout=60))
            for proc in procs:
                proc.join(timeout=10)
            rss_end = server.rss_kib()
        finally:
            server.stop()
    requests = sum(r["requests"] for r in results)
    failed = sum(r["failed"] for r in results)
    refreshes = [r["refreshes"] for r in results]
    expected = duration / (access_ttl - leeway)
    return {
        "backend": backend,
        "client processes": processes,
        "sessions": len(results),
        "rate per session req/s": rate,
        "duration s": duration,
        "access token ttl s": access_ttl,
        "requests": requests,
        "requests failed (lost)": failed,
        "refreshes per session (min/max)": f"{min(refreshes)}/{max(refreshes)}",
        "expected per session (duration / (ttl - leeway))": round(expected, 1),
        "server RSS start KiB": rss_start,
        "server RSS end KiB": rss_end,
        "server RSS max KiB": max([*rss_samples, rss_end]),
        "server RSS growth %": round(100.0 * (rss_end - rss_start) / rss_start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills soak", description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=4, help="sessions per process")
    parser.add_argument("--rate", type=float, default=5.0, help="requests/s per session")
    parser.add_argument("--duration", type=float, default=180.0)
    parser.add_argument("--ttl", type=int, default=10, help="access token lifetime, s")
    args = parser.parse_args(argv)
    figures = run(
        args.backend,
        processes=args.processes,
        sessions_per_process=args.sessions,
        rate=args.rate,
        duration=args.duration,
        access_ttl=args.ttl,
    )
    print_figures("soak", figures)
    lo, hi = (int(x) for x in figures["refreshes per session (min/max)"].split("/"))
    expected = figures["expected per session (duration / (ttl - leeway))"]
    ok = (
        figures["requests failed (lost)"] == 0
        and lo >= int(expected) - 1
        and hi <= int(expected) + 1
        and figures["server RSS growth %"] < 20
    )
    return 0 if ok else 1
