"""Refresh storm: N concurrent requests on an expired access token.

Against a real freshtoken server (rotation and reuse detection on, grace window 0),
once with freshtoken's TokenAuth and once with Authlib's AsyncOAuth2Client
auto-refresh. Two shapes of the same storm:

* one client: N tasks on one AsyncClient;
* W workers: the N tasks spread over W independent clients that share one stored
  token (as W worker processes of one app would). freshtoken coordinates them
  through its FileStore lock; Authlib has nothing to coordinate with.

For each: refreshes sent (as the server counted them), requests that failed,
whether the session survived (its current refresh token still refreshes), wall time.

    python bench/client_storm.py [--requests 200] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

from freshtoken.client import FileStore, OAuth2Refresher, Retry, TokenAuth, TokenSet
from freshtoken.testing import LiveServer


def refreshes_seen(srv: LiveServer) -> int:
    s = srv.stats
    return int(s["refresh_rotated"] + s["refresh_grace"] + s["refresh_reuse"] + s["refresh_failed"])


def survives(srv: LiveServer, refresh_token: str | None) -> bool:
    if not refresh_token:
        return False
    r = httpx2.post(
        srv.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": "default",
        },
    )
    return r.status_code == 200


async def storm_freshtoken(
    srv: LiveServer, answer: dict[str, Any], n: int, workers: int, tmp: Path
):
    path = tmp / f"ft-{workers}.json"
    tokens = TokenSet.from_answer(answer)
    FileStore(path).save(TokenSet(tokens.access_token, tokens.refresh_token, time.time() - 1))
    auths = [
        TokenAuth(OAuth2Refresher(srv.token_url), FileStore(path), retry=Retry(attempts=2))
        for _ in range(workers)
    ]
    clients = [httpx2.AsyncClient(auth=a, timeout=60) for a in auths]
    me = srv.url + "/api/me"
    before = refreshes_seen(srv)
    started = time.perf_counter()

    async def one(i: int) -> bool:
        try:
            r = await clients[i % workers].get(me)
            return r.status_code == 200
        except Exception:
            return False

    results = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - started
    for c in clients:
        await c.aclose()
    stored = FileStore(path).load()
    return {
        "refreshes": refreshes_seen(srv) - before,
        "failed": results.count(False),
        "survived": survives(srv, stored.refresh_token if stored else None),
        "wall": wall,
    }


async def storm_authlib(
    srv: LiveServer, answer: dict[str, Any], n: int, workers: int, tmp: Path
) -> dict[str, Any]:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    path = tmp / f"authlib-{workers}.json"
    token = {
        "access_token": answer["access_token"],
        "refresh_token": answer["refresh_token"],
        "token_type": "Bearer",
        "expires_at": int(time.time()) - 1,
    }
    path.write_text(json.dumps(token))

    async def update_token(new: dict[str, Any], refresh_token: str | None = None, **_: Any) -> None:
        path.write_text(json.dumps(dict(new)))  # what an app would do: persist it

    clients = [
        AsyncOAuth2Client(
            client_id="default",
            token=json.loads(path.read_text()),
            token_endpoint=srv.token_url,
            token_endpoint_auth_method="none",
            update_token=update_token,
            timeout=60,
        )
        for _ in range(workers)
    ]
    me = srv.url + "/api/me"
    before = refreshes_seen(srv)
    started = time.perf_counter()

    async def one(i: int) -> bool:
        try:
            r = await clients[i % workers].get(me)
            return r.status_code == 200
        except Exception:
            return False

    results = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - started
    for c in clients:
        await c.aclose()
    stored = json.loads(path.read_text())
    return {
        "refreshes": refreshes_seen(srv) - before,
        "failed": results.count(False),
        "survived": survives(srv, stored.get("refresh_token")),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    settings = {"refresh_grace_seconds": 0, "access_token_ttl": 300}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, LiveServer(settings=settings) as srv:
        srv.create_user("bench", "pw")
        for workers in (1, args.workers):
            for name, fn in (("freshtoken", storm_freshtoken), ("authlib", storm_authlib)):
                answer = srv.login("bench", "pw")
                result = asyncio.run(fn(srv, answer, args.requests, workers, Path(tmp)))
                rows.append((name, workers, result))
    print(
        f"refresh storm: {args.requests} concurrent requests on an expired access token, "
        "freshtoken server, rotation + reuse detection on, grace 0"
    )
    print(
        f"{'client':<12} {'clients':>7} {'refreshes sent':>15} {'failed requests':>16} "
        f"{'session survived':>17} {'wall time':>10}"
    )
    for name, workers, r in rows:
        print(
            f"{name:<12} {workers:>7} {r['refreshes']:>15} {r['failed']:>16} "
            f"{'yes' if r['survived'] else 'NO':>17} {r['wall']:>9.2f}s"
        )


if __name__ == "__main__":
    main()
