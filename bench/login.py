"""Password logins per second with the documented argon2id parameters.

A real server (uvicorn, 1 and 2 workers) on SQLite; wrk posts
``grant_type=password`` for one user at ``--concurrency`` for ``--seconds``.
Every answer must be a 200 with a refresh token (each login opens a session).

Baseline measured in the same run: raw argon2id verifications/s in this
process with as many threads as the machine has vCPUs (argon2-cffi releases the
GIL), so the report says "logins run at X % of what argon2id alone allows here".
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import (
    BENCH_DIR,
    BENCH_USER,
    Server,
    cpu_count,
    database,
    run_wrk,
    seed_sessions,
    server_env,
)


def argon2_params() -> dict[str, int]:
    from freshtoken.server.settings import Settings

    s = Settings()
    return {
        "time_cost": s.password_time_cost,
        "memory_kib": s.password_memory_kib,
        "parallelism": s.password_parallelism,
    }


def raw_argon2_rate(seconds: float, threads: int) -> float:
    """argon2id verifications/s with ``threads`` threads, server parameters."""
    from freshtoken.server.passwords import Passwords

    pw = Passwords(**argon2_params())
    stored = pw.hash("bench-password")
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def work(i: int) -> None:
        while time.monotonic() < deadline:
            pw.verify(stored, "bench-password")
            counts[i] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(seconds + 30)
    return sum(counts) / (time.monotonic() - started)


def run_one(workers: int, *, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    with database("sqlite") as url:
        seed_sessions(url, 0)
        with Server("uvicorn", workers, server_env(url)) as srv:
            user, password = BENCH_USER
            args = {"connections": concurrency, "threads": min(2, concurrency)}
            if warmup > 0:
                run_wrk(
                    srv.url,
                    script=BENCH_DIR / "login.lua",
                    script_args=[user, password],
                    seconds=warmup,
                    **args,
                )
            cpu0 = srv.cpu_seconds()
            result = run_wrk(
                srv.url,
                script=BENCH_DIR / "login.lua",
                script_args=[user, password],
                seconds=seconds,
                **args,
            )
            cpu = srv.cpu_seconds() - cpu0
    return {
        "workers": workers,
        "concurrency": concurrency,
        "login": {**result.as_dict(), "server_cpu_us": round(1e6 * cpu / max(1, result.requests))},
    }


def run(*, workers: list[int], concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    vcpus = cpu_count()
    params = argon2_params()
    baseline = raw_argon2_rate(min(seconds, 5.0), vcpus)
    print(
        f"argon2id t={params['time_cost']} m={params['memory_kib']} KiB p={params['parallelism']}: "
        f"raw verify {baseline:.1f}/s with {vcpus} threads (baseline)",
        flush=True,
    )
    rows = []
    for n in workers:
        row = run_one(n, concurrency=concurrency, seconds=seconds, warmup=warmup)
        r = row["login"]
        row["pct_of_raw_argon2"] = round(100 * r["rps"] / baseline, 1) if baseline else 0.0
        row["per_vcpu"] = round(r["rps"] / vcpus, 1)
        detail = f" {r['error_detail']}" if r["error_detail"] else ""
        print(
            f"login uvicorn {n}w c={concurrency}: {r['rps']:.1f}/s ({row['per_vcpu']:.1f}/s per "
            f"vCPU)  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  errors {r['errors']}"
            f"{detail}  -> {row['pct_of_raw_argon2']:.1f} % of raw argon2id",
            flush=True,
        )
        rows.append(row)
    return {
        "bench": "login",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "argon2id": params,
        "raw_argon2_per_s": round(baseline, 1),
        "vcpus": vcpus,
        "rows": rows,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--concurrency", "-c", type=int, default=8)
    parser.add_argument("--seconds", "-t", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--json", help="also write the figures as JSON here")


def main(args: argparse.Namespace) -> dict[str, Any]:
    result = run(
        workers=[int(w) for w in args.workers.split(",") if w],
        concurrency=args.concurrency,
        seconds=args.seconds,
        warmup=args.warmup,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    main(parser.parse_args())
