"""Token stores: memory, file, keyring, Redis.

Every store has ``load()``, ``save(tokens)``, ``clear()`` and ``lock()``. The lock
is what makes refresh single-flight across processes (and machines, for Redis):
the refresher takes it, re-reads the store, and refreshes only if nobody else
already did.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from freshtoken.client._session import TokenSet
from freshtoken.errors import ConfigurationError, TokenStoreError

__all__ = ["FileStore", "KeyringStore", "MemoryStore", "RedisStore"]


def _encode(tokens: TokenSet) -> str:
    return json.dumps({"freshtoken": 1, **tokens.to_dict()}, separators=(",", ":"))


def _decode(raw: str | bytes, where: str) -> TokenSet:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenStoreError(f"{where} does not hold valid token JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TokenStoreError(f"{where} does not hold a token object")
    return TokenSet.from_dict(data)


class _ThreadLock:
    """A plain lock that any thread may release (the async driver acquires it in a worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._lock.release()


class MemoryStore:
    """Tokens in this process's memory only (the default)."""

    def __init__(self, tokens: TokenSet | None = None) -> None:
        self._tokens = tokens
        self._lock = _ThreadLock()

    def __repr__(self) -> str:
        return "MemoryStore()"

    def load(self) -> TokenSet | None:
        return self._tokens

    def save(self, tokens: TokenSet) -> None:
        self._tokens = tokens

    def clear(self) -> None:
        self._tokens = None

    def lock(self) -> _ThreadLock:
        return self._lock


# --- file ---------------------------------------------------------------------------


class _FileLock:
    """An exclusive OS lock on a sidecar file (``flock``; ``filelock`` where there is none)."""

    def __init__(self, path: Path, timeout: float | None) -> None:
        self._path = path
        self._timeout = timeout
        self._fd: int | None = None
        self._fallback: Any = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            import filelock

            self._fallback = filelock.FileLock(str(self._path), timeout=self._timeout or -1)
            self._fallback.acquire()
            return
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if self._timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + self._timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise TokenStoreError(
                                f"could not lock {self._path} within {self._timeout} s"
                            ) from None
                        time.sleep(0.005)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.release()
            self._fallback = None
            return
        fd, self._fd = self._fd, None
        if fd is not None:
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class _Cipher:
    """AES-256-GCM with a key derived from the user's key by scrypt (salt in the file)."""

    def __init__(self, key: str | bytes) -> None:
        if not key:
            raise ConfigurationError("the encryption key is empty")
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "encryption at rest needs the 'crypto' extra: pip install 'freshtoken[crypto]'"
            ) from exc
        self._secret = key.encode() if isinstance(key, str) else bytes(key)
        self._keys: dict[bytes, bytes] = {}
        self._salt = secrets.token_bytes(16)

    def _derive(self, salt: bytes) -> bytes:
        cached = self._keys.get(salt)
        if cached is None:
            cached = hashlib.scrypt(self._secret, salt=salt, n=2**14, r=8, p=1, dklen=32)
            self._keys[salt] = cached
        return cached

    def seal(self, plaintext: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        data = AESGCM(self._derive(self._salt)).encrypt(nonce, plaintext, b"freshtoken")
        b64 = base64.urlsafe_b64encode
        return json.dumps(
            {
                "freshtoken": 1,
                "enc": "scrypt+aes-256-gcm",
                "salt": b64(self._salt).decode(),
                "nonce": b64(nonce).decode(),
                "data": b64(data).decode(),
            }
        ).encode()

    def open(self, envelope: dict[str, Any], where: str) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            salt = base64.urlsafe_b64decode(envelope["salt"])
            nonce = base64.urlsafe_b64decode(envelope["nonce"])
            data = base64.urlsafe_b64decode(envelope["data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenStoreError(f"{where}: damaged encrypted envelope") from exc
        try:
            return AESGCM(self._derive(salt)).decrypt(nonce, data, b"freshtoken")
        except InvalidTag:
            raise TokenStoreError(
                f"{where} cannot be decrypted: wrong key, or the file was altered"
            ) from None


class FileStore:
    """Tokens in a JSON file: atomic replace, mode 0600, an OS lock for processes.

    ``key`` turns on encryption at rest (AES-256-GCM, key derived with scrypt; needs
    the ``crypto`` extra). The lock lives in a sidecar file ``<path>.lock``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: str | bytes | None = None,
        lock_timeout: float | None = 120.0,
    ) -> None:
        self.path = Path(path).expanduser()
        if self.path.exists() and self.path.is_dir():
            raise ConfigurationError(f"FileStore path {self.path} is a directory")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._cipher = _Cipher(key) if key is not None else None
        self._lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r}{', encrypted' if self._cipher else ''})"

    def load(self) -> TokenSet | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TokenStoreError(f"cannot read {self.path}: {exc}") from exc
        if not raw.strip():
            return None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TokenStoreError(f"{self.path} does not hold valid token JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TokenStoreError(f"{self.path} does not hold a token object")
        if "enc" in data:
            if self._cipher is None:
                raise TokenStoreError(f"{self.path} is encrypted: pass key= to FileStore")
            return _decode(self._cipher.open(data, str(self.path)), str(self.path))
        if self._cipher is not None:
            raise TokenStoreError(
                f"{self.path} is not encrypted but this FileStore has a key; "
                "delete the file and log in again"
            )
        return TokenSet.from_dict(data)

    def save(self, tokens: TokenSet) -> None:
        payload = _encode(tokens).encode()
        if self._cipher is not None:
            payload = self._cipher.seal(payload)
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = directory / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(payload)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            with contextlib.suppress(OSError):
                dfd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            raise TokenStoreError(f"cannot save tokens to {self.path}: {exc}") from exc

    def clear(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise TokenStoreError(f"cannot remove {self.path}: {exc}") from exc

    def lock(self) -> _FileLock:
        return _FileLock(self.lock_path, self._lock_timeout)


# --- keyring --------------------------------------------------------------------------


class KeyringStore:
    """Tokens in the OS keyring (``keyring`` extra), one entry per ``service``/``username``.

    The keyring has no lock; within a process a lock is shared by every KeyringStore
    of the same entry, and ``lock_path`` adds an OS file lock for several processes.
    """

    _locks: dict[tuple[str, str], _ThreadLock] = {}
    _locks_guard = threading.Lock()

    def __init__(
        self,
        service: str = "freshtoken",
        username: str = "default",
        *,
        lock_path: str | os.PathLike[str] | None = None,
    ) -> None:
        try:
            import keyring
        except ImportError as exc:
            raise ConfigurationError(
                "KeyringStore needs the 'keyring' extra: pip install 'freshtoken[keyring]'"
            ) from exc
        self._keyring = keyring
        self.service = service
        self.username = username
        self._lock_path = Path(lock_path).expanduser() if lock_path is not None else None
        with self._locks_guard:
            self._thread_lock = self._locks.setdefault((service, username), _ThreadLock())

    def __repr__(self) -> str:
        return f"KeyringStore({self.service!r}, {self.username!r})"

    def load(self) -> TokenSet | None:
        try:
            raw = self._keyring.get_password(self.service, self.username)
        except Exception as exc:
            raise TokenStoreError(f"keyring read failed: {exc}") from exc
        if not raw:
            return None
        return _decode(raw, repr(self))

    def save(self, tokens: TokenSet) -> None:
        try:
            self._keyring.set_password(self.service, self.username, _encode(tokens))
        except Exception as exc:
            raise TokenStoreError(f"keyring write failed: {exc}") from exc

    def clear(self) -> None:
        try:
            self._keyring.delete_password(self.service, self.username)
        except self._keyring.errors.PasswordDeleteError:
            pass
        except Exception as exc:
            raise TokenStoreError(f"keyring delete failed: {exc}") from exc

    def lock(self) -> _ThreadLock | _ChainedLock:
        if self._lock_path is None:
            return self._thread_lock
        return _ChainedLock(self._thread_lock, _FileLock(self._lock_path, 120.0))


class _ChainedLock:
    def __init__(self, first: _ThreadLock, second: _FileLock) -> None:
        self._first = first
        self._second = second

    def acquire(self) -> None:
        self._first.acquire()
        try:
            self._second.acquire()
        except BaseException:
            self._first.release()
            raise

    def release(self) -> None:
        try:
            self._second.release()
        finally:
            self._first.release()


# --- Redis ------------------------------------------------------------------------------


class _RedisLock:
    def __init__(self, lock: Any, name: str) -> None:
        self._lock = lock
        self._name = name

    def acquire(self) -> None:
        try:
            ok = self._lock.acquire()
        except Exception as exc:
            raise TokenStoreError(f"Redis lock {self._name!r} failed: {exc}") from exc
        if not ok:
            raise TokenStoreError(f"could not take the Redis lock {self._name!r} in time")

    def release(self) -> None:
        with contextlib.suppress(Exception):  # expired meanwhile: nothing left to release
            self._lock.release()


class RedisStore:
    """Tokens and the refresh lock in Redis, for workers on several machines.

    ``redis`` is a URL (``redis://host:6379/0``) or a ``redis.Redis`` client. ``key``
    names the entry (use one per user/session); the lock is ``<key>:lock`` and expires
    after ``lock_timeout`` seconds should its holder die.
    """

    def __init__(
        self,
        redis: Any = "redis://127.0.0.1:6379/0",
        *,
        key: str = "freshtoken:tokens",
        lock_timeout: float = 30.0,
        blocking_timeout: float = 60.0,
        ttl: int | None = None,
    ) -> None:
        if isinstance(redis, str):
            try:
                import redis as redis_lib
            except ImportError as exc:
                raise ConfigurationError(
                    "RedisStore needs the 'redis' extra: pip install 'freshtoken[redis]'"
                ) from exc
            if not redis.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigurationError(f"not a Redis URL: {redis!r}")
            self._redis = redis_lib.Redis.from_url(redis)
        else:
            self._redis = redis
        self.key = key
        self.lock_timeout = lock_timeout
        self.blocking_timeout = blocking_timeout
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"RedisStore(key={self.key!r})"

    def load(self) -> TokenSet | None:
        try:
            raw = self._redis.get(self.key)
        except Exception as exc:
            raise TokenStoreError(f"Redis read failed: {exc}") from exc
        if raw is None:
            return None
        return _decode(raw, repr(self))

    def save(self, tokens: TokenSet) -> None:
        try:
            self._redis.set(self.key, _encode(tokens), ex=self.ttl)
        except Exception as exc:
            raise TokenStoreError(f"Redis write failed: {exc}") from exc

    def clear(self) -> None:
        try:
            self._redis.delete(self.key)
        except Exception as exc:
            raise TokenStoreError(f"Redis delete failed: {exc}") from exc

    def lock(self) -> _RedisLock:
        name = self.key + ":lock"
        lock = self._redis.lock(
            name,
            timeout=self.lock_timeout,
            blocking_timeout=self.blocking_timeout,
            thread_local=False,
        )
        return _RedisLock(lock, name)
