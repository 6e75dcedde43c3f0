"""Benchmark of the resource-server verifier (not a test).

Prints, in one run:

(a) raw PyJWT ``jwt.decode`` of a token with a pre-parsed key  — the baseline,
(b) ``Verifier.verify`` with its cache disabled                 — target >= 0.9 x (a),
(c) ``Verifier.verify`` with its cache warm,
(d) requests/s of a small Starlette endpoint behind ``BearerAuthMiddleware`` vs
    the same endpoint unprotected (uvicorn in a subprocess pinned to one core,
    load from ``wrk`` on another)                                — target >= 0.85.

Figures are medians of ``--runs`` runs. Usage::

    python bench/verify.py [--runs 5] [--algs ES256,Ed25519,RS256] [--seconds 3] [--no-http]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from freshtoken.verify import KeySet, Verifier

ISSUER = "https://auth.bench"
AUDIENCE = "https://api.bench"


def make_key(alg: str) -> Any:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def pyjwt_instance() -> jwt.PyJWT:
    """Our own PyJWT instance with the RFC 9864 name registered (the global one is untouched)."""
    instance = jwt.PyJWT()
    instance._jws.register_algorithm("Ed25519", jwt.algorithms.OKPAlgorithm())
    return instance


def make_token(private: Any, alg: str, kid: str, encoder: jwt.PyJWT) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "user-1234",
        "aud": AUDIENCE,
        "exp": now + 3600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "client_id": "default",
        "scope": "openid profile read write",
        "sid": uuid.uuid4().hex,
    }
    return encoder.encode(claims, private, alg, headers={"kid": kid, "typ": "at+jwt"})


def rate(fn: Any, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (batched to keep loop overhead low)."""
    batch = 200
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def bench_verify(alg: str, runs: int, seconds: float) -> dict[str, float]:
    private = make_key(alg)
    public = private.public_key()
    encoder = pyjwt_instance()
    token = make_token(private, alg, "k1", encoder)
    decoder = pyjwt_instance()

    def raw_pyjwt() -> None:
        decoder.decode(token, public, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)

    keys = KeySet.from_keys({"k1": public})
    uncached = Verifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, cache_size=0)
    cached = Verifier(issuer=ISSUER, audience=AUDIENCE, keys=keys)
    assert uncached.verify(token).sub == cached.verify(token).sub == "user-1234"
    raw_pyjwt()

    samples: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    for _ in range(runs):  # interleaved, so drift hits all three alike
        samples["a"].append(rate(raw_pyjwt, seconds))
        samples["b"].append(rate(lambda: uncached.verify(token), seconds))
        samples["c"].append(rate(lambda: cached.verify(token), seconds / 2))
    return {name: statistics.median(values) for name, values in samples.items()}


# --- (d): HTTP ------------------------------------------------------------------------


def serve_main(mode: str, port: int, jwks_file: str) -> None:
    """Entry point of the uvicorn subprocess (``--serve``)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from freshtoken.verify import BearerAuthMiddleware

    async def me(request: Request) -> JSONResponse:
        claims = request.scope.get("freshtoken.claims")
        return JSONResponse({"sub": claims.sub if claims is not None else "anonymous"})

    app: Any = Starlette(routes=[Route("/api/me", me)])
    if mode == "protected":
        jwks = json.loads(Path(jwks_file).read_text())
        app = BearerAuthMiddleware(app, Verifier(issuer=ISSUER, audience=AUDIENCE, keys=jwks))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def taskset(core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(core)]


def wrk(port: int, token: str, seconds: float, core: int | None) -> float:
    cmd = [
        *taskset(core),
        "/usr/bin/wrk",
        "-t1",
        "-c32",
        f"-d{seconds:g}s",
        "-H",
        f"Authorization: Bearer {token}",
        f"http://127.0.0.1:{port}/api/me",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"wrk saw {non2xx.group(1)} error answers:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    return float(match.group(1))


def bench_http(runs: int, seconds: float) -> dict[str, float]:
    private = make_key("ES256")
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": "k1", "alg": "ES256", "use": "sig"})
    token = make_token(private, "ES256", "k1", pyjwt_instance())
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_core = cpus[0] if len(cpus) >= 2 else None
    client_core = cpus[1] if len(cpus) >= 2 else None
    results: dict[str, list[float]] = {"plain": [], "protected": []}
    with tempfile.TemporaryDirectory() as tmp:
        jwks_file = str(Path(tmp) / "jwks.json")
        Path(jwks_file).write_text(json.dumps({"keys": [jwk]}))
        servers = {}
        try:
            for mode in ("plain", "protected"):
                port = free_port()
                cmd = [*taskset(server_core), sys.executable, __file__, "--serve", mode]
                cmd += ["--port", str(port), "--jwks-file", jwks_file]
                servers[mode] = (subprocess.Popen(cmd), port)
            for _, port in servers.values():
                wait_port(port)
            for _, port in servers.values():  # warm-up
                wrk(port, token, 1, client_core)
            for _ in range(runs):
                for mode, (_, port) in servers.items():
                    results[mode].append(wrk(port, token, seconds, client_core))
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)
    return {mode: statistics.median(values) for mode, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="wrk duration per run")
    parser.add_argument("--algs", default="ES256,Ed25519,RS256")
    parser.add_argument("--no-http", action="store_true", help="skip (d)")
    parser.add_argument("--serve", choices=["plain", "protected"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--jwks-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve, args.port, args.jwks_file)
        return

    print(
        f"freshtoken verifier benchmark: medians of {args.runs} runs,"
        f" Python {sys.version.split()[0]}"
    )
    print(f"PyJWT {jwt.__version__}; (a)-(c): one Python thread, same token and key\n")
    header = f"{'alg':<8} {'(a) PyJWT/s':>12} {'(b) uncached/s':>15} {'(c) cached/s':>14}"
    print(header + f" {'(b)/(a)':>8} {'(c)/(a)':>8}")
    for alg in [a.strip() for a in args.algs.split(",") if a.strip()]:
        r = bench_verify(alg, args.runs, 0.6)
        print(
            f"{alg:<8} {r['a']:>12,.0f} {r['b']:>15,.0f} {r['c']:>14,.0f}"
            f" {r['b'] / r['a']:>8.2f} {r['c'] / r['a']:>8.1f}"
        )
    print("target: (b)/(a) >= 0.90")
    if args.no_http:
        return
    if not Path("/usr/bin/wrk").exists():
        print("\n(d) skipped: /usr/bin/wrk not found")
        return
    print(f"\n(d) uvicorn + Starlette, 1 worker, wrk -t1 -c32 -d{args.seconds:g}s, ES256 token")
    h = bench_http(args.runs, args.seconds)
    print(f"    unprotected endpoint       {h['plain']:>10,.0f} req/s")
    print(f"    behind BearerAuthMiddleware {h['protected']:>9,.0f} req/s")
    print(f"    ratio protected/unprotected {h['protected'] / h['plain']:>9.2f}  (target >= 0.85)")


if __name__ == "__main__":
    main()
