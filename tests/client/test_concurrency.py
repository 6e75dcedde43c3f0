"""Single-flight (threads, asyncio tasks, processes), versioned tokens, in-flight requests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from client_helpers import SyncHTTP, async_client

from freshtoken.client import FileStore, TokenAuth

WORKER = Path(__file__).with_name("client_worker.py")


@pytest.mark.parametrize("name", ["httpx2", "httpx", "requests"])
def test_64_threads_on_one_client_one_refresh(server, name):
    events = []
    auth = server.auth(tokens=server.session(expired=True), on_event=events.append)
    barrier = threading.Barrier(64)
    with SyncHTTP(name, auth) as http:

        def call(_):
            barrier.wait()
            return http.get(server.me).status_code

        with ThreadPoolExecutor(64) as pool:
            statuses = list(pool.map(call, range(64)))
    assert statuses == [200] * 64
    assert server.refreshes == 1
    assert server.srv.stats["refresh_rotated"] == 1
    kinds = [e.kind for e in events]
    assert kinds == ["refresh_started", "refresh_succeeded"]
    assert events[-1].waiters >= 1  # others waited instead of refreshing


async def test_500_tasks_on_one_async_client_one_refresh(server, alib):
    events = []
    auth = server.auth(tokens=server.session(expired=True), on_event=events.append)
    async with async_client(alib, auth) as http:
        responses = await asyncio.gather(*(http.get(server.me) for _ in range(500)))
    assert [r.status_code for r in responses] == [200] * 500
    assert server.refreshes == 1
    succeeded = [e for e in events if e.kind == "refresh_succeeded"]
    assert len(succeeded) == 1
    assert succeeded[0].waiters >= 100


async def test_one_auth_shared_by_threads_and_several_event_loops(server):
    """One TokenAuth used from a sync client in threads and async clients on two loops."""
    import httpx2

    auth = server.auth(tokens=server.session(expired=True))
    start = threading.Barrier(3)

    def other_loop():
        async def run():
            async with async_client("httpx2", auth) as http:
                start.wait()
                rs = await asyncio.gather(*(http.get(server.me) for _ in range(20)))
                return [r.status_code for r in rs]

        return asyncio.run(run())

    def sync_threads():
        with httpx2.Client(auth=auth) as http:
            start.wait()
            with ThreadPoolExecutor(8) as pool:
                return list(pool.map(lambda _: http.get(server.me).status_code, range(16)))

    with ThreadPoolExecutor(2) as pool:
        f1 = pool.submit(other_loop)
        f2 = pool.submit(sync_threads)
        async with async_client("httpx2", auth) as http:
            await asyncio.to_thread(start.wait)
            mine = await asyncio.gather(*(http.get(server.me) for _ in range(20)))
        assert f1.result() == [200] * 20
        assert f2.result() == [200] * 16
    assert [r.status_code for r in mine] == [200] * 20
    assert server.refreshes == 1


def _run_workers(n, lib, store_spec, server, tmp_path):
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), lib, store_spec, server.token_url, server.me, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    time.sleep(0.05)
    go.write_text("go")
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.parametrize("name", ["httpx2", "httpx", "requests"])
def test_8_processes_sharing_one_file_store_one_refresh(server, tmp_path, name):
    store = FileStore(tmp_path / "tokens.json")
    store.save(server.session(expired=True))
    results = _run_workers(8, name, str(store.path), server, tmp_path)
    assert [r["status"] for r in results] == [200] * 8
    assert server.refreshes == 1
    assert server.srv.stats["refresh_rotated"] == 1
    assert server.srv.stats["refresh_reuse"] == 0
    # One process refreshed; the others found the new tokens in the store, either
    # under the lock (adopted) or because they started after the refresh.
    kinds = [k for r in results for k in r["events"]]
    assert kinds.count("refresh_started") == kinds.count("refresh_succeeded") == 1
    assert set(kinds) <= {"refresh_started", "refresh_succeeded", "tokens_adopted"}
    assert [r["generation"] for r in results] == [1] * 8
    assert store.load().generation == 1


def test_a_fresh_process_continues_the_session_from_the_store(server, tmp_path, lib):
    store = FileStore(tmp_path / "tokens.json")
    first = server.session(expired=True)
    auth = server.auth(store, tokens=first)
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
    assert server.refreshes == 1
    saved = store.load()
    assert saved.refresh_token != first.refresh_token
    assert saved.generation == 1
    # A brand-new process picks the session up from the file, no refresh needed.
    results = _run_workers(1, lib, str(store.path), server, tmp_path)
    assert results[0]["status"] == 200
    assert results[0]["events"] == []
    assert server.refreshes == 1
    # And the rotated token in the store still refreshes (it was saved before the retry).
    store.save(replace(store.load(), expires_at=time.time() - 1))
    results = _run_workers(1, lib, str(store.path), server, tmp_path)
    assert results[0]["status"] == 200
    assert results[0]["generation"] == 2
    assert server.srv.stats["refresh_rotated"] == 2
    assert server.srv.stats["refresh_reuse"] == 0


def test_two_sessions_on_one_store_the_second_adopts(server, tmp_path, lib):
    """The cross-process rule without processes: lock, re-read, refresh only if needed."""
    store = FileStore(tmp_path / "tokens.json")
    store.save(server.session(expired=True))
    events_a, events_b = [], []
    a = server.auth(store, on_event=events_a.append)
    b = server.auth(store, on_event=events_b.append)
    b.session.set_tokens(store.load())  # b already holds the expired token in memory
    with SyncHTTP(lib, a) as http_a, SyncHTTP(lib, b) as http_b:
        assert http_a.get(server.me).status_code == 200
        assert http_b.get(server.me).status_code == 200
    assert server.refreshes == 1
    assert [e.kind for e in events_a] == ["refresh_started", "refresh_succeeded"]
    assert [e.kind for e in events_b] == ["tokens_adopted"]
    assert b.session.tokens == a.session.tokens


def test_a_401_on_an_older_generation_retries_with_the_current_token(server, lib):
    """Request A is in flight with generation 0 while B refreshes; A's 401 retries, no refresh."""
    good = server.session()
    auth = server.auth(tokens=good)
    with SyncHTTP(lib, auth) as http:
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(http.get, server.url + "/t/held")
            assert server.faults.held_arrived.wait(10)
            # The old token is now refused: B gets a 401 and refreshes.
            server.faults.revoked.add(good.access_token)
            assert http.get(server.url + "/t/strict").status_code == 200
            assert server.refreshes == 1
            server.faults.release_held.set()
            assert held.result(timeout=30).status_code == 200
    assert server.refreshes == 1  # A did not refresh again
    assert server.faults.count("/t/held") == 2
    held_bearers = [b for p, b in server.faults.requests if p == "/t/held"]
    assert held_bearers[0] == "Bearer " + good.access_token
    assert held_bearers[1] == "Bearer " + auth.tokens.access_token


def test_requests_in_flight_when_a_refresh_starts_wait_for_it(server, lib):
    """axios-auth-refresh #307: a 401 that arrives while the refresh runs joins it."""
    good = server.session()
    events = []
    auth = server.auth(tokens=good, on_event=events.append)
    server.faults.revoked.add(good.access_token)
    server.faults.hold_token = threading.Event()
    with SyncHTTP(lib, auth) as http, ThreadPoolExecutor(4) as pool:
        first = pool.submit(http.get, server.url + "/t/strict")
        assert server.faults.token_waiting.wait(10)  # the refresh is running (held)
        # These were sent with the old token; their 401s arrive during the refresh.
        late = [pool.submit(http.get, server.url + "/t/strict") for _ in range(3)]
        deadline = time.monotonic() + 10
        while server.faults.statuses[("/t/strict", 401)] < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.faults.hold_token.set()
        statuses = [f.result(timeout=30).status_code for f in [first, *late]]
    assert statuses == [200] * 4
    assert server.faults.token_calls == 1
    assert server.refreshes == 1
    succeeded = [e for e in events if e.kind == "refresh_succeeded"]
    assert succeeded[0].waiters == 3


def test_file_store_lock_is_held_across_the_refresh(server, tmp_path):
    """While one session refreshes, another process's lock attempt waits."""
    store = FileStore(tmp_path / "tokens.json")
    store.save(server.session(expired=True))
    server.faults.hold_token = threading.Event()
    auth = server.auth(store)
    with SyncHTTP("httpx2", auth) as http, ThreadPoolExecutor(1) as pool:
        fut = pool.submit(http.get, server.me)
        assert server.faults.token_waiting.wait(10)
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import fcntl,os,sys; fd=os.open(sys.argv[1], os.O_RDWR);"
                "\ntry:\n fcntl.flock(fd, fcntl.LOCK_EX|fcntl.LOCK_NB); print('free')"
                "\nexcept BlockingIOError:\n print('locked')",
                str(store.lock_path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.stdout.strip() == "locked"
        server.faults.hold_token.set()
        assert fut.result(timeout=30).status_code == 200


def test_token_auth_is_one_object_for_every_library(server):
    import httpx
    import httpx2
    import requests

    auth = server.auth(tokens=server.session())
    assert isinstance(auth, TokenAuth)
    assert isinstance(auth, httpx2.Auth)
    assert isinstance(auth, httpx.Auth)
    assert isinstance(auth, requests.auth.AuthBase)
    with httpx2.Client(auth=auth) as a, httpx.Client(auth=auth) as b, requests.Session() as c:
        c.auth = auth
        assert a.get(server.me).status_code == 200
        assert b.get(server.me).status_code == 200
        assert c.get(server.me).status_code == 200
