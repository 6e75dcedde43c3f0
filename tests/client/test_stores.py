"""Stores: memory, file (atomic, 0600, lock, encryption), keyring, Redis."""

from __future__ import annotations

import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from client_helpers import SyncHTTP

from freshtoken import ConfigurationError, TokenStoreError
from freshtoken.client import FileStore, KeyringStore, MemoryStore, RedisStore, TokenSet

T = TokenSet("acc.ess.tok", "ftr_refresh", 1_900_000_000.0, 3, "read")


def test_memory_store_round_trip():
    store = MemoryStore()
    assert store.load() is None
    store.save(T)
    assert store.load() == T
    store.clear()
    assert store.load() is None


def test_file_store_is_0600_atomic_and_round_trips(tmp_path):
    store = FileStore(tmp_path / "sub" / "tokens.json")
    assert store.load() is None
    store.save(T)
    assert store.load() == T
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    for i in range(5):
        store.save(replace(T, generation=i))
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["tokens.json"]
    store.clear()
    assert store.load() is None
    store.clear()  # idempotent


def test_file_store_expands_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    store = FileStore("~/.config/myapp/tokens.json")
    store.save(T)
    assert (tmp_path / ".config/myapp/tokens.json").exists()


def test_file_store_encryption_at_rest(tmp_path):
    path = tmp_path / "tokens.json"
    store = FileStore(path, key="correct horse battery staple")
    store.save(T)
    raw = path.read_text()
    assert "ftr_refresh" not in raw
    assert "acc.ess.tok" not in raw
    assert FileStore(path, key="correct horse battery staple").load() == T
    with pytest.raises(TokenStoreError, match="wrong key"):
        FileStore(path, key="wrong").load()
    with pytest.raises(TokenStoreError, match="encrypted"):
        FileStore(path).load()
    FileStore(tmp_path / "plain.json").save(T)
    with pytest.raises(TokenStoreError, match="not encrypted"):
        FileStore(tmp_path / "plain.json", key="k").load()


def test_file_store_damaged_file_is_a_clear_error(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text("{not json")
    with pytest.raises(TokenStoreError, match="valid token JSON"):
        FileStore(path).load()
    path.write_text('{"refresh_token": "x"}')
    with pytest.raises(TokenStoreError, match="no access_token"):
        FileStore(path).load()


def test_file_store_lock_excludes_other_holders(tmp_path):
    store = FileStore(tmp_path / "t.json", lock_timeout=0.2)
    first = store.lock()
    first.acquire()
    second = store.lock()
    started = time.monotonic()
    with pytest.raises(TokenStoreError, match="could not lock"):
        second.acquire()
    assert time.monotonic() - started >= 0.2
    first.release()
    second.acquire()
    second.release()


def test_a_directory_is_not_a_file_store(tmp_path):
    with pytest.raises(ConfigurationError, match="directory"):
        FileStore(tmp_path)


class _MemoryKeyring:
    """A keyring backend in memory (the real OS keyring is not available in CI)."""

    def __init__(self):
        import keyring.backend

        class Backend(keyring.backend.KeyringBackend):
            priority = 1
            data: dict = {}

            def get_password(self, service, username):
                return self.data.get((service, username))

            def set_password(self, service, username, password):
                self.data[(service, username)] = password

            def delete_password(self, service, username):
                import keyring.errors

                if (service, username) not in self.data:
                    raise keyring.errors.PasswordDeleteError("missing")
                del self.data[(service, username)]

        self.backend = Backend()


@pytest.fixture
def memory_keyring():
    import keyring

    previous = keyring.get_keyring()
    fake = _MemoryKeyring()
    keyring.set_keyring(fake.backend)
    yield fake.backend
    keyring.set_keyring(previous)


def test_keyring_store_refreshes_a_session(server, memory_keyring, lib, tmp_path):
    store = KeyringStore("freshtoken-test", "alice", lock_path=tmp_path / "kr.lock")
    assert store.load() is None
    auth = server.auth(store, tokens=server.session(expired=True))
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
    assert server.refreshes == 1
    assert KeyringStore("freshtoken-test", "alice").load().generation == 1
    stored = memory_keyring.data[("freshtoken-test", "alice")]
    assert auth.session.tokens.refresh_token in stored
    store.clear()
    store.clear()
    assert store.load() is None


@pytest.mark.redis
def test_redis_store_round_trip_and_lock(client_redis_url):
    store = RedisStore(client_redis_url, key="ft:test:alice", lock_timeout=5, blocking_timeout=0.2)
    assert store.load() is None
    store.save(T)
    assert store.load() == T
    held = store.lock()
    held.acquire()
    with pytest.raises(TokenStoreError, match="in time"):
        store.lock().acquire()
    held.release()
    store.clear()
    assert store.load() is None


@pytest.mark.redis
def test_redis_store_workers_on_several_machines_refresh_once(server, client_redis_url, lib):
    """Four independent sessions (as on four machines) share a RedisStore: one refresh."""
    key = "ft:test:shared"
    RedisStore(client_redis_url, key=key).save(server.session(expired=True))
    auths = [server.auth(RedisStore(client_redis_url, key=key)) for _ in range(4)]
    barrier = threading.Barrier(16)

    def run(i):
        with SyncHTTP(lib, auths[i % 4]) as http:
            barrier.wait()
            return http.get(server.me).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(run, range(16)))
    assert statuses == [200] * 16
    assert server.refreshes == 1
    assert RedisStore(client_redis_url, key=key).load().generation == 1


@pytest.mark.redis
def test_redis_store_processes_refresh_once(server, client_redis_url, tmp_path):
    from test_concurrency import _run_workers

    key = "ft:test:procs"
    RedisStore(client_redis_url, key=key).save(server.session(expired=True))
    results = _run_workers(4, "httpx2", f"{client_redis_url}#{key}", server, tmp_path)
    assert [r["status"] for r in results] == [200] * 4
    assert server.refreshes == 1


def test_redis_store_refuses_a_bad_url():
    with pytest.raises(ConfigurationError, match="Redis URL"):
        RedisStore("http://127.0.0.1:6379")
