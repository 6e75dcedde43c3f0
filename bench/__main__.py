"""``python -m bench all`` runs every benchmark and writes bench/RESULTS.md.

    python -m bench all [--quick] [--output bench/RESULTS.md]
    python -m bench refresh [--db sqlite,postgresql] [--stack uvicorn,granian] [--workers 1,2]
                            [-c 32] [-t 10] [--sessions 2000]
    python -m bench login [--workers 1,2] [-c 8] [-t 10]
    python -m bench verify | client_overhead | client_storm | <any bench/NAME.py>

refresh and login are run in-process (their figures go into the tables); every
other ``bench/*.py`` script is run as ``python bench/NAME.py`` and its output goes
into RESULTS.md verbatim, its ``label: number unit`` lines also into a table.
PostgreSQL comes from FRESHTOKEN_BENCH_PG_URL (default postgres@127.0.0.1:5432);
without it the PostgreSQL rows are skipped and say so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import login, refresh
from bench._common import BENCH_DIR, PG_ADMIN, ROOT, WRK, machine, postgres_available, versions

IN_PROCESS = {"refresh": refresh, "login": login}
SCRIPT_TIMEOUT = 600

# Published figures of other servers (measured elsewhere, on their hardware).
ANCHORS = [
    (
        "Keycloak 26 (published sizing guide)",
        "refresh_token grants",
        120.0,
        "120/s per vCPU; up to 2x that on x86 (so 240)",
    ),
    (
        "Red Hat build of Keycloak 24 (published)",
        "refresh_token grants",
        350.0,
        "350/s per vCPU",
    ),
    (
        "Ory Hydra (published CI benchmark, 2 CPUs)",
        "client_credentials grants",
        (412 + 513) / 2 / 2,
        "412-513/s on 2 CPUs = 206-256/s per vCPU; a cheaper grant (no refresh token stored)",
    ),
]
ANCHOR_NOTE = (
    "The anchors were measured elsewhere, on other machines, by their authors; they are "
    "published figures, not runs on this machine. Ours were measured on this machine with "
    "the load generator (wrk) on the same vCPUs as the server. Per-vCPU figures divide "
    "by all vCPUs of the machine."
)


def other_scripts() -> list[str]:
    return sorted(
        p.stem
        for p in BENCH_DIR.glob("*.py")
        if not p.stem.startswith("_") and p.stem not in IN_PROCESS
    )


def run_script(name: str, argv: list[str], timeout: float = SCRIPT_TIMEOUT) -> tuple[int, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    try:
        proc = subprocess.run(
            [sys.executable, str(BENCH_DIR / f"{name}.py"), *argv],
            cwd=str(ROOT),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return 124, out + f"\n(timed out after {timeout:.0f} s)"
    output = proc.stdout + (f"\n[stderr]\n{proc.stderr[-3000:]}" if proc.returncode else "")
    return proc.returncode, output


_FIGURE = re.compile(r"^\s*([^:|]{3,80}?)\s*:\s*([-+]?\d[\d,]*(?:\.\d+)?)\s*(.*)$")


def figures(output: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in output.splitlines():
        m = _FIGURE.match(line)
        if m:
            rows.append((m.group(1).strip(), m.group(2), m.group(3).strip()))
    return rows


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "-"


def pg_version() -> str:
    if not postgres_available():
        return "not reachable"
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(PG_ADMIN)
        with psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username or "postgres",
            dbname=url.database or "postgres",
            connect_timeout=5,
        ) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            sync = conn.execute("SHOW synchronous_commit").fetchone()
            return f"{row[0] if row else '?'} (synchronous_commit={sync[0] if sync else '?'})"
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"


def wrk_version() -> str:
    try:
        out = subprocess.run([WRK, "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0].split(" Copyright")[0]
    except Exception:
        return "not found"


# --- the report ------------------------------------------------------------------------


def _ms(v: float) -> str:
    return f"{v:.1f}"


def refresh_section(res: dict[str, Any]) -> list[str]:
    lines = [
        "## Refresh with rotation (`python -m bench refresh`)",
        "",
        f"Closed loop, wrk from a separate process; {res.get('repeats', 1)} paired runs of "
        f"{res['seconds']:.0f} s per row (the ceiling, then the refresh figure, on the same "
        "server process), every request a real `grant_type=refresh_token` with rotation. "
        "Ceiling: `GET /healthz` (a trivial JSON endpoint) on the same server. Figures are "
        "medians over the runs; % of ceiling is the median of the pairs' ratios (each "
        "pair's runs are seconds apart, so drift in the machine's speed cancels out).",
        "",
        "| database | server | workers | conc. | refreshes/s | p50 ms | p99 ms | errors "
        "| server CPU µs/refresh | ceiling req/s | % of ceiling | each pair |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in res["rows"]:
        r, c = row["refresh"], row["ceiling"]
        errors = r["errors"] + row["sessions_with_two_live_tokens"]
        pairs = ", ".join(
            f"{100 * x['refresh_rps'] / x['ceiling_rps']:.1f}" for x in row.get("runs", [])
        )
        lines.append(
            f"| {row['db']} | {row['stack']} | {row['workers']} | {row['concurrency']} "
            f"| **{r['rps']:.0f}** | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {errors} "
            f"| {r['server_cpu_us']} | {c['rps']:.0f} | {row['pct_of_ceiling']:.1f} % "
            f"| {pairs} |"
        )
    for s in res.get("skipped", []):
        lines.append(f"\nSkipped: {s}.")
    lines.append("")
    lines.append(
        "Errors count non-200 answers, transport errors, answers without a new refresh token, "
        "and sessions left with two live refresh tokens after the run (checked in the "
        "database). Rate limits are off for the run (`FRESHTOKEN_RATELIMIT_ENABLED=false`): "
        "2,000 sessions refreshed thousands of times a second from one IP exceed the "
        "default per-session (120/minute) and per-IP (6000/minute) limits by design."
    )
    return lines


def anchors_section(res: dict[str, Any], vcpus: int) -> list[str]:
    best: dict[str, dict[str, Any]] = {}
    for row in res["rows"]:
        if row["db"] not in best or row["refresh"]["rps"] > best[row["db"]]["refresh"]["rps"]:
            best[row["db"]] = row
    lines = [
        "## Beside the published anchors (per vCPU)",
        "",
        "| server | operation | per vCPU | our best per vCPU / theirs |",
        "|---|---|---|---|",
    ]
    for db, row in best.items():
        per = row["refresh"]["rps"] / vcpus
        lines.append(
            f"| **freshtoken** ({db}, {row['stack']}, {row['workers']} worker(s), this machine, "
            f"{vcpus} vCPUs incl. load generator) | refresh_token grants with rotation "
            f"| **{per:.0f}/s** | - |"
        )
    for name, op, per_vcpu, note in ANCHORS:
        ratios = ", ".join(
            f"{db}: {row['refresh']['rps'] / vcpus / per_vcpu:.1f}x" for db, row in best.items()
        )
        lines.append(f"| {name} | {op} | {note} | {ratios or '-'} |")
    lines += ["", ANCHOR_NOTE]
    return lines


def login_section(res: dict[str, Any]) -> list[str]:
    p = res["argon2id"]
    lines = [
        "## Password login (`python -m bench login`)",
        "",
        f"argon2id t={p['time_cost']}, m={p['memory_kib']} KiB, p={p['parallelism']} (the "
        "server defaults: OWASP's recommended minimum for argon2id). Baseline in the same "
        f"run: raw argon2id verifications in one process with {res['vcpus']} threads: "
        f"**{res['raw_argon2_per_s']:.1f}/s**.",
        "",
        "| server | workers | conc. | logins/s | per vCPU | p50 ms | p99 ms | errors "
        "| % of raw argon2id |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in res["rows"]:
        r = row["login"]
        lines.append(
            f"| uvicorn | {row['workers']} | {row['concurrency']} | **{r['rps']:.1f}** "
            f"| {row['per_vcpu']:.1f} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {r['errors']} "
            f"| {row['pct_of_raw_argon2']:.1f} % |"
        )
    return lines


def script_section(name: str, code: int, output: str) -> list[str]:
    lines = [f"## `{name}` (`python bench/{name}.py`)", ""]
    if code != 0:
        lines.append(f"**exit status {code}**")
        lines.append("")
    rows = figures(output)
    if rows:
        lines += ["| figure | value | |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
        lines.append("")
    lines += ["<details><summary>output</summary>", "", "```", output.strip(), "```", "</details>"]
    return lines


def write_results(
    path: Path,
    *,
    started: str,
    load_before: str,
    load_after: str,
    duration: float,
    refresh_res: dict[str, Any] | None,
    login_res: dict[str, Any] | None,
    scripts: list[tuple[str, int, str]],
) -> None:
    m = machine()
    vcpus = int(m["vcpus"])
    v = versions(
        "freshtoken", "uvicorn", "granian", "starlette", "uvloop", "httptools", "sqlalchemy",
        "psycopg", "pyjwt", "cryptography", "argon2-cffi", "httpx2", "httpx",
    )  # fmt: skip
    lines = [
        "# freshtoken benchmark results",
        "",
        "Generated by `python -m bench all`; do not edit by hand.",
        "",
        "| | |",
        "|---|---|",
        f"| date | {started} (took {duration / 60:.1f} min) |",
        f"| machine | {m['cpu']}, {m['vcpus']} vCPUs, {m['memory']} RAM, {m['os']} |",
        f"| load average before / after | {load_before} / {load_after} |",
        f"| Python | {m['python']} |",
        f"| PostgreSQL | {pg_version()} |",
        f"| load generator | {wrk_version()} |",
        "| versions | " + ", ".join(f"{k} {val}" for k, val in v.items()) + " |",
        "",
        "A load average well above the vCPU count means something else was running: the "
        "figures are then low (compare the ceilings between runs).",
        "",
    ]
    if refresh_res:
        lines += [*refresh_section(refresh_res), ""]
        if refresh_res["rows"]:
            lines += [*anchors_section(refresh_res, vcpus), ""]
    if login_res:
        lines += [*login_section(login_res), ""]
    for name, code, output in scripts:
        lines += [*script_section(name, code, output), ""]
    path.write_text("\n".join(lines))


def cmd_all(args: argparse.Namespace) -> int:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t0 = time.monotonic()
    load_before = loadavg()
    seconds = 4.0 if args.quick else args.seconds
    print("== refresh", flush=True)
    refresh_res = refresh.run(
        dbs=["sqlite", "postgresql"],
        stacks=["uvicorn", "granian"],
        workers=[1, 2],
        sessions=2000,
        concurrency=32,
        seconds=min(seconds, 6.0),
        warmup=1.0 if args.quick else 2.0,
        repeats=1 if args.quick else 3,
    )
    print("== login", flush=True)
    login_res = login.run(
        workers=[1, 2], concurrency=8, seconds=seconds, warmup=0.0 if args.quick else 1.0
    )
    scripts = []
    for name in other_scripts():
        print(f"== {name}", flush=True)
        code, output = run_script(name, [])
        print(output.rstrip(), flush=True)
        scripts.append((name, code, output))
    out = Path(args.output)
    write_results(
        out,
        started=started,
        load_before=load_before,
        load_after=loadavg(),
        duration=time.monotonic() - t0,
        refresh_res=refresh_res,
        login_res=login_res,
        scripts=scripts,
    )
    print(f"wrote {out}")
    failed = [n for n, code, _ in scripts if code != 0]
    errors = sum(r["refresh"]["errors"] for r in refresh_res["rows"]) + sum(
        r["login"]["errors"] for r in login_res["rows"]
    )
    if failed or errors:
        print(f"problems: failed scripts {failed}, errors {errors}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] not in ("all", *IN_PROCESS, "-h", "--help"):
        name = argv[0]
        if name not in other_scripts():
            print(f"unknown benchmark {name!r}; known: all, refresh, login, "
                  + ", ".join(other_scripts()), file=sys.stderr)  # fmt: skip
            return 2
        code, output = run_script(name, argv[1:])
        print(output)
        return code
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_all = sub.add_parser("all", help="every benchmark; writes bench/RESULTS.md")
    p_all.add_argument("--quick", action="store_true", help="4 s per figure (a smoke run)")
    p_all.add_argument("--seconds", "-t", type=float, default=10.0)
    p_all.add_argument("--output", default=str(BENCH_DIR / "RESULTS.md"))
    for name, module in IN_PROCESS.items():
        module.add_arguments(sub.add_parser(name, help=(module.__doc__ or "").splitlines()[0]))
    args = parser.parse_args(argv)
    if args.command == "all":
        return cmd_all(args)
    IN_PROCESS[args.command].main(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
