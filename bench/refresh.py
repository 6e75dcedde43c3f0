"""Refresh-token rotation throughput against a real server.

For each database (SQLite, PostgreSQL), server stack (uvicorn, granian) and worker
count (1, 2): a fresh database with ``--sessions`` sessions, a real server process,
then ``--repeat`` pairs of closed-loop wrk runs from a separate process at
``--concurrency`` (medians reported; the ratio is the median of the pairs' ratios):

1. the baseline: ``GET /healthz`` on the same server (a trivial JSON endpoint: the
   ceiling of the stack);
2. the figure: ``POST /oauth/token grant_type=refresh_token``, each request a real
   rotation (bench/refresh.lua hands each answer's new refresh token to a later
   request; every token is presented exactly once).

Prints refreshes/s, p50/p99 latency, errors (must be 0) and "X % of the stack's
ceiling", then checks that no session ended up with two live tokens.
Rate limits are off for the run (FRESHTOKEN_RATELIMIT_ENABLED=false): the default
per-session limit (120/minute) and per-IP limit (6000/minute) would otherwise
throttle a load generator that drives thousands of refreshes/s from one IP.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import (
    BENCH_DIR,
    Server,
    database,
    postgres_available,
    run_wrk,
    seed_sessions,
    server_env,
    write_token_files,
)

WRK_THREADS = 2


def live_token_violations(database_url: str) -> int:
    """Sessions holding more than one live refresh token (must be 0)."""
    from sqlalchemy import create_engine, text

    from freshtoken.server.storage.database import normalize_database_url

    engine = create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM (SELECT session_id FROM refresh_tokens "
                        "WHERE used_at IS NULL AND revoked_at IS NULL "
                        "GROUP BY session_id HAVING count(*) > 1) AS doubled"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def run_one(
    db_kind: str,
    stack: str,
    workers: int,
    *,
    sessions: int,
    concurrency: int,
    seconds: float,
    warmup: float,
    repeats: int = 3,
    extra_args: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``repeats`` paired runs (ceiling, then refresh) on one server; the figures are
    medians, the ratio the median of the pairs' ratios (a pair shares the moment,
    so drift in the machine's speed cancels out of it)."""
    sessions = max(sessions, 2 * concurrency)
    with database(db_kind) as url, tempfile.TemporaryDirectory(prefix="ft-wrk-") as tmp:
        tokens = seed_sessions(url, sessions * repeats + 2 * concurrency)
        warm_dir = Path(tmp, "warm")
        warm_dir.mkdir()
        warm_stem = write_token_files(tokens[sessions * repeats :], WRK_THREADS, warm_dir)
        stems = []
        for i in range(repeats):
            run_dir = Path(tmp, f"run{i}")
            run_dir.mkdir()
            chunk = tokens[i * sessions : (i + 1) * sessions]
            stems.append(write_token_files(chunk, WRK_THREADS, run_dir))
        env = server_env(url, **(extra_env or {}))
        pairs = []
        with Server(stack, workers, env, extra_args=list(extra_args or [])) as srv:
            common = {"connections": concurrency, "threads": WRK_THREADS}
            if warmup > 0:  # open pools, warm caches
                run_wrk(srv.url, script=BENCH_DIR / "ceiling.lua", seconds=warmup, **common)
                run_wrk(
                    srv.url,
                    script=BENCH_DIR / "refresh.lua",
                    script_args=[warm_stem],
                    seconds=warmup,
                    **common,
                )
            for stem in stems:
                cpu0 = srv.cpu_seconds()
                ceiling = run_wrk(
                    srv.url, script=BENCH_DIR / "ceiling.lua", seconds=seconds, **common
                )
                cpu1 = srv.cpu_seconds()
                refresh = run_wrk(
                    srv.url,
                    script=BENCH_DIR / "refresh.lua",
                    script_args=[stem],
                    seconds=seconds,
                    **common,
                )
                cpu2 = srv.cpu_seconds()
                pairs.append((ceiling, refresh, cpu1 - cpu0, cpu2 - cpu1))
        doubled = live_token_violations(url)
    return {
        "db": db_kind,
        "stack": stack,
        "workers": workers,
        "concurrency": concurrency,
        "sessions": sessions,
        "repeats": repeats,
        "ceiling": _medians([(c, cpu) for c, _, cpu, _ in pairs]),
        "refresh": _medians([(r, cpu) for _, r, _, cpu in pairs]),
        "pct_of_ceiling": round(
            statistics.median(100 * r.rps / c.rps if c.rps else 0.0 for c, r, _, _ in pairs), 1
        ),
        "runs": [
            {"ceiling_rps": c.rps, "refresh_rps": r.rps, "refresh_p99_ms": r.p99_ms}
            for c, r, _, _ in pairs
        ],
        "sessions_with_two_live_tokens": doubled,
    }


def _medians(runs: list[tuple[Any, float]]) -> dict[str, Any]:
    """Median rps, p50, p99 and server CPU per request over runs; errors summed."""
    detail: dict[str, int] = {}
    for result, _ in runs:
        for key, n in result.error_detail.items():
            detail[key] = detail.get(key, 0) + n
    return {
        "requests": sum(result.requests for result, _ in runs),
        "rps": round(statistics.median(result.rps for result, _ in runs), 1),
        "p50_ms": round(statistics.median(result.p50_ms for result, _ in runs), 2),
        "p99_ms": round(statistics.median(result.p99_ms for result, _ in runs), 2),
        "errors": sum(result.errors for result, _ in runs),
        "error_detail": detail,
        "server_cpu_us": round(
            statistics.median(1e6 * cpu / max(1, result.requests) for result, cpu in runs)
        ),
    }


def format_row(row: dict[str, Any]) -> str:
    r, c = row["refresh"], row["ceiling"]
    errors = r["errors"] + row["sessions_with_two_live_tokens"]
    detail = f" {r['error_detail']}" if r["error_detail"] else ""
    return (
        f"{row['db']:<10} {row['stack']:<8} {row['workers']:>2}w c={row['concurrency']:<3} "
        f"refresh {r['rps']:>8.1f}/s  p50 {r['p50_ms']:>6.2f} ms  p99 {r['p99_ms']:>6.2f} ms  "
        f"errors {errors}{detail}  server CPU {r['server_cpu_us']} us/req  "
        f"| ceiling {c['rps']:>8.1f}/s ({c['server_cpu_us']} us/req)  "
        f"-> refresh runs at {row['pct_of_ceiling']:.1f} % of the stack's ceiling "
        f"(median of {row['repeats']} paired runs: "
        + ", ".join(f"{100 * x['refresh_rps'] / x['ceiling_rps']:.1f}" for x in row["runs"])
        + " %)"
    )


def run(
    *,
    dbs: list[str],
    stacks: list[str],
    workers: list[int],
    sessions: int,
    concurrency: int,
    seconds: float,
    warmup: float,
    repeats: int = 3,
) -> dict[str, Any]:
    rows = []
    skipped = []
    for db_kind in dbs:
        if db_kind == "postgresql" and not postgres_available():
            skipped.append("postgresql (not reachable; set FRESHTOKEN_BENCH_PG_URL)")
            print("skipping PostgreSQL: not reachable", file=sys.stderr)
            continue
        for stack in stacks:
            for n in workers:
                row = run_one(
                    db_kind,
                    stack,
                    n,
                    sessions=sessions,
                    concurrency=concurrency,
                    seconds=seconds,
                    warmup=warmup,
                    repeats=repeats,
                )
                print(format_row(row), flush=True)
                rows.append(row)
    return {
        "bench": "refresh",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": seconds,
        "repeats": repeats,
        "rows": rows,
        "skipped": skipped,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--stack", default="uvicorn,granian", help="uvicorn,granian,serve")
    parser.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--concurrency", "-c", type=int, default=32)
    parser.add_argument("--seconds", "-t", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--repeat", type=int, default=3, help="paired runs per figure (medians are reported)"
    )
    parser.add_argument("--json", help="also write the figures as JSON here")


def main(args: argparse.Namespace) -> dict[str, Any]:
    result = run(
        dbs=[d for d in args.db.split(",") if d],
        stacks=[s for s in args.stack.split(",") if s],
        workers=[int(w) for w in args.workers.split(",") if w],
        sessions=args.sessions,
        concurrency=args.concurrency,
        seconds=args.seconds,
        warmup=args.warmup,
        repeats=args.repeat,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    main(parser.parse_args())
