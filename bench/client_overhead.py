"""TokenAuth overhead: requests/s through TokenAuth vs a static bearer header.

Same freshtoken server, same run, same httpx2.Client settings. The two clients
take turns in small batches (200 requests each) so that background load hits both
alike; totals over all batches give each side's requests/s. A second figure
measures the client-side cost alone (CPU time per request, in-memory transport).
Target: ratio >= 0.95.

    python bench/client_overhead.py [--batches 40] [--batch 200] [--path /api/me]
"""

from __future__ import annotations

import argparse
import time

import httpx2

from freshtoken.client import MemoryStore, OAuth2Refresher, TokenAuth, TokenSet
from freshtoken.testing import LiveServer


def batch(client: httpx2.Client, url: str, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        r = client.get(url)
        if r.status_code != 200:
            raise SystemExit(f"unexpected {r.status_code}: {r.text}")
    return time.perf_counter() - started


def cpu_per_request(client: httpx2.Client, n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        client.get("http://bench.invalid/")
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--path", default="/api/me")
    args = parser.parse_args()
    with LiveServer(settings={"access_token_ttl": 3600}) as srv:
        srv.create_user("bench", "pw")
        tokens = TokenSet.from_answer(srv.login("bench", "pw"))
        auth = TokenAuth(OAuth2Refresher(srv.token_url), MemoryStore(tokens))
        url = srv.url + args.path
        static = httpx2.Client(headers={"Authorization": "Bearer " + tokens.access_token})
        managed = httpx2.Client(auth=auth)
        batch(static, url, 100)  # warm up both connections
        batch(managed, url, 100)
        t_static = t_auth = 0.0
        for i in range(args.batches):
            if i % 2:  # alternate who goes first
                t_auth += batch(managed, url, args.batch)
                t_static += batch(static, url, args.batch)
            else:
                t_static += batch(static, url, args.batch)
                t_auth += batch(managed, url, args.batch)
        static.close()
        managed.close()
        refreshes = srv.stats["refresh_rotated"]
    total = args.batches * args.batch
    rps_static, rps_auth = total / t_static, total / t_auth

    transport = httpx2.MockTransport(lambda request: httpx2.Response(200))
    mock_static = httpx2.Client(
        transport=transport, headers={"Authorization": "Bearer " + tokens.access_token}
    )
    mock_auth = httpx2.Client(transport=transport, auth=auth)
    cpu_static = min(cpu_per_request(mock_static, 5000) for _ in range(3))
    cpu_auth = min(cpu_per_request(mock_auth, 5000) for _ in range(3))

    print(
        f"GET {args.path} on a live freshtoken server, httpx2.Client, sequential, "
        f"{total} requests per side in alternating batches of {args.batch}"
    )
    print(f"static bearer header : {rps_static:7.0f} req/s")
    print(f"TokenAuth            : {rps_auth:7.0f} req/s")
    print(f"ratio TokenAuth/static: {rps_auth / rps_static:.3f}   (target >= 0.95)")
    print(
        f"client CPU per request (in-memory transport): static {cpu_static:.1f} us, "
        f"TokenAuth {cpu_auth:.1f} us, added {cpu_auth - cpu_static:+.1f} us"
    )
    print(f"refreshes during the run: {refreshes}")


if __name__ == "__main__":
    main()
