"""Verification keys: parsing JWKs once, and a JWKS cache with throttled refetch.

A :class:`VerificationKey` is a parsed public key *bound to its algorithm*: a
P-256 key only ever verifies ``ES256``, an RSA key ``RS256``, an Ed25519 key
``Ed25519`` (or the legacy ``EdDSA`` name, when the verifier allows it). Keys are
parsed into ``cryptography`` objects when the key set is loaded, never per token.

:class:`JWKSCache` fetches a JWKS document (from a URL with ``httpx2``, or from a
callable that returns the current JWKS, e.g. an auth server's own key ring),
caches it for ``ttl`` seconds, refetches when a token names an unknown ``kid``
(so signing-key rotation needs no restart) at most once per
``min_refetch_interval``, and keeps serving the keys it has when the endpoint is
down. It never follows ``jku``/``x5u`` and never trusts an embedded ``jwk``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from freshtoken._clock import SYSTEM_CLOCK, Clock
from freshtoken.errors import ConfigurationError, FreshtokenError

log = logging.getLogger("freshtoken.verify")

SUPPORTED_ALGORITHMS = frozenset({"ES256", "RS256", "Ed25519", "EdDSA"})
"""Every algorithm the verifier can be configured with. Never ``none``, never HMAC."""

DEFAULT_ALGORITHMS = frozenset({"ES256", "RS256", "Ed25519"})
"""The default allow-list. ``EdDSA`` (the polymorphic pre-RFC 9864 name) must be asked for."""

MAX_KID_LENGTH = 256
MIN_RSA_BITS = 2048

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
JWKSLoader: TypeAlias = Callable[[], "Mapping[str, Any] | KeySet"]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


class KeysUnavailable(FreshtokenError):
    """No verification key could be loaded (the JWKS endpoint has never answered).

    This is the resource server's problem, not the token's: the middleware
    answers ``503`` with ``Retry-After`` rather than a 401 that would send
    clients refreshing tokens for nothing.
    """


class JWKSError(FreshtokenError):
    """A JWKS document (or the endpoint serving it) was unusable."""


# --- keys ------------------------------------------------------------------------


class VerificationKey:
    """One public key, parsed once, bound to the algorithm(s) it may verify."""

    __slots__ = ("algorithm", "algorithms", "kid", "public_key", "verify")

    kid: str | None
    algorithm: str
    algorithms: frozenset[str]
    public_key: PublicKey
    verify: Callable[[bytes, bytes], bool]
    """``verify(signature, signing_input) -> bool``; never raises for a bad signature."""

    def __init__(self, kid: str | None, public_key: PublicKey, algorithm: str | None = None):
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            if not isinstance(public_key.curve, ec.SECP256R1):
                raise ConfigurationError(f"unsupported EC curve {public_key.curve.name}")
            natural, algs = "ES256", frozenset({"ES256"})
            verify = _es256_verifier(public_key)
        elif isinstance(public_key, rsa.RSAPublicKey):
            if public_key.key_size < MIN_RSA_BITS:
                raise ConfigurationError(f"RSA key of {public_key.key_size} bits is too small")
            natural, algs = "RS256", frozenset({"RS256"})
            verify = _rs256_verifier(public_key)
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            natural, algs = "Ed25519", frozenset({"Ed25519", "EdDSA"})
            verify = _ed25519_verifier(public_key)
        else:
            raise ConfigurationError(f"unsupported key type {type(public_key).__name__}")
        if algorithm is not None and algorithm not in algs:
            raise ConfigurationError(f"key of type {natural} cannot be used with {algorithm!r}")
        self.kid = kid
        self.algorithm = algorithm or natural
        self.algorithms = algs
        self.public_key = public_key
        self.verify = verify

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerificationKey:
        """Parse one public JWK (RFC 7517). Private members, if any, are ignored."""
        if not isinstance(jwk, Mapping):
            raise JWKSError("a JWK must be a JSON object")
        kid = jwk.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
            raise JWKSError("bad 'kid'")
        use = jwk.get("use")
        if use is not None and use != "sig":
            raise JWKSError(f"key use {use!r} is not 'sig'")
        ops = jwk.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            raise JWKSError("key_ops does not allow 'verify'")
        alg = jwk.get("alg")
        if alg is not None and alg not in SUPPORTED_ALGORITHMS:
            raise JWKSError(f"unsupported key algorithm {alg!r}")
        kty = jwk.get("kty")
        key: PublicKey
        try:
            if kty == "EC":
                if jwk.get("crv") != "P-256":
                    raise JWKSError(f"unsupported EC curve {jwk.get('crv')!r}")
                x, y = _b64_member(jwk, "x"), _b64_member(jwk, "y")
                if len(x) != 32 or len(y) != 32:
                    raise JWKSError("bad P-256 coordinates")
                key = ec.EllipticCurvePublicNumbers(
                    int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
                ).public_key()
            elif kty == "RSA":
                n, e = _b64_member(jwk, "n"), _b64_member(jwk, "e")
                key = rsa.RSAPublicNumbers(
                    int.from_bytes(e, "big"), int.from_bytes(n, "big")
                ).public_key()
            elif kty == "OKP":
                if jwk.get("crv") != "Ed25519":
                    raise JWKSError(f"unsupported OKP curve {jwk.get('crv')!r}")
                key = ed25519.Ed25519PublicKey.from_public_bytes(_b64_member(jwk, "x"))
            else:
                raise JWKSError(f"unsupported key type {kty!r}")
            return cls(kid, key, alg)
        except JWKSError:
            raise
        except (ValueError, TypeError, ConfigurationError) as exc:
            raise JWKSError(f"unusable JWK: {exc}") from None

    def __repr__(self) -> str:
        return f"VerificationKey(kid={self.kid!r}, algorithm={self.algorithm!r})"


def _b64_member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not _B64URL.fullmatch(value) or len(value) > 2048:
        raise JWKSError(f"JWK member {name!r} is not base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise JWKSError(f"JWK member {name!r} is not base64url") from None


def _es256_verifier(key: ec.EllipticCurvePublicKey) -> Callable[[bytes, bytes], bool]:
    verify = key.verify
    from_bytes = int.from_bytes

    def es256(signature: bytes, message: bytes) -> bool:
        if len(signature) != 64:
            return False
        der = encode_dss_signature(from_bytes(signature[:32]), from_bytes(signature[32:]))
        try:
            verify(der, message, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True

    return es256


def _rs256_verifier(key: rsa.RSAPublicKey) -> Callable[[bytes, bytes], bool]:
    verify = key.verify
    size = (key.key_size + 7) // 8

    def rs256(signature: bytes, message: bytes) -> bool:
        if len(signature) != size:
            return False
        try:
            verify(signature, message, _PKCS1V15, _SHA256)
        except InvalidSignature:
            return False
        return True

    return rs256


def _ed25519_verifier(key: ed25519.Ed25519PublicKey) -> Callable[[bytes, bytes], bool]:
    verify = key.verify

    def ed25519_(signature: bytes, message: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return ed25519_


class KeySet:
    """An immutable set of :class:`VerificationKey` objects, looked up by ``kid``."""

    __slots__ = ("_by_kid", "_keys")

    def __init__(self, keys: Iterable[VerificationKey] = ()) -> None:
        self._keys: tuple[VerificationKey, ...] = tuple(keys)
        self._by_kid: dict[str, VerificationKey] = {}
        for key in self._keys:
            if key.kid is not None:
                self._by_kid.setdefault(key.kid, key)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> KeySet:
        """Parse a JWKS document ``{"keys": [...]}``; unusable keys are skipped (and logged)."""
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
            raise JWKSError('a JWKS must be a JSON object with a "keys" list')
        keys = []
        for jwk in jwks["keys"]:
            try:
                keys.append(VerificationKey.from_jwk(jwk))
            except JWKSError as exc:
                log.warning("skipping JWK: %s", exc)
        return cls(keys)

    @classmethod
    def from_keys(cls, keys: Mapping[str, PublicKey]) -> KeySet:
        """Build a set from ``{kid: cryptography public key}`` (algorithm from the key type)."""
        return cls(VerificationKey(kid, key) for kid, key in keys.items())

    def get(self, kid: str | None) -> VerificationKey | None:
        """The key for ``kid``; a token without ``kid`` matches only a one-key set."""
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        return self._by_kid.get(kid)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._by_kid)

    @property
    def algorithms(self) -> frozenset[str]:
        return frozenset(key.algorithm for key in self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[VerificationKey]:
        return iter(self._keys)

    def __repr__(self) -> str:
        return f"KeySet({[k.kid for k in self._keys]!r})"


# --- key sources -----------------------------------------------------------------


class KeySource(Protocol):
    """Where a :class:`~freshtoken.verify.Verifier` gets its keys."""

    def get_key(self, kid: str | None) -> VerificationKey | None: ...

    async def aget_key(self, kid: str | None) -> VerificationKey | None: ...


class StaticKeys:
    """A fixed :class:`KeySet` (no fetching, no expiry)."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    def get_key(self, kid: str | None) -> VerificationKey | None:
        return self.keys.get(kid)

    async def aget_key(self, kid: str | None) -> VerificationKey | None:
        return self.keys.get(kid)


class JWKSCache:
    """A cached, self-refreshing JWKS.

    Give exactly one of ``url`` (fetched with ``httpx2``), ``loader`` (a callable
    returning the current JWKS dict or a :class:`KeySet` — in-process, no HTTP) or
    use :meth:`from_issuer` (RFC 8414 discovery of ``jwks_uri``, resolved lazily on
    the first fetch so a resource server can start while the auth server is down).

    * the key set is fetched on first use and again once ``ttl`` seconds old;
    * a ``kid`` not in the set triggers a refetch, at most once every
      ``min_refetch_interval`` seconds (all fetch attempts share that throttle, so
      tokens with garbage ``kid`` values cannot make it hammer the auth server);
    * a failed fetch keeps the cached keys; only with no keys at all does a lookup
      raise :class:`KeysUnavailable`;
    * responses larger than ``max_bytes`` are refused; redirects are not followed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        loader: JWKSLoader | None = None,
        ttl: float = 300.0,
        min_refetch_interval: float = 10.0,
        timeout: float = 3.0,
        max_bytes: int = 256 * 1024,
        clock: Clock = SYSTEM_CLOCK,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if (url is None) == (loader is None):
            raise ConfigurationError("JWKSCache needs exactly one of url= or loader=")
        if url is not None and not url.startswith(("https://", "http://")):
            raise ConfigurationError(f"JWKS URL must be http(s): {url!r}")
        self.url = url
        self.loader = loader
        self.ttl = float(ttl)
        self.min_refetch_interval = float(min_refetch_interval)
        self.timeout = float(timeout)
        self.max_bytes = int(max_bytes)
        self.clock = clock
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._discovery: tuple[str, str] | None = None  # (metadata url, expected issuer)
        self._keys: KeySet | None = None
        self._last_loaded: object = None
        self._fetched_at = -math.inf
        self._last_attempt = -math.inf
        self._generation = 0
        self._lock = threading.Lock()
        self._inflight: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self.fetches = 0
        """Fetch attempts so far (successful or not)."""
        self.failures = 0
        """Failed fetch attempts so far."""

    @classmethod
    def from_issuer(cls, issuer: str, **kwargs: Any) -> JWKSCache:
        """Discover ``jwks_uri`` from ``{issuer}/.well-known/oauth-authorization-server``.

        Discovery happens on the first fetch; the metadata's ``issuer`` must equal
        ``issuer`` (RFC 8414 §3.3).
        """
        base = issuer.rstrip("/")
        cache = cls(base + "/.well-known/jwks.json", **kwargs)
        cache.url = None
        cache._discovery = (base + "/.well-known/oauth-authorization-server", issuer)
        return cache

    @property
    def keys(self) -> KeySet | None:
        """The key set currently cached (``None`` before the first successful fetch)."""
        return self._keys

    # -- lookups ------------------------------------------------------------------

    def get_key(self, kid: str | None) -> VerificationKey | None:
        keys = self._keys
        if keys is None:
            self._refresh(wait=True)
            keys = self._keys
            if keys is None:
                raise KeysUnavailable("no verification keys could be loaded")
        elif self.clock.now() - self._fetched_at >= self.ttl:
            self._refresh(wait=False)
            keys = self._keys or keys
        key = keys.get(kid)
        if key is None and self._may_refetch_for(kid):
            self._refresh(wait=True)
            key = (self._keys or keys).get(kid)
        return key

    async def aget_key(self, kid: str | None) -> VerificationKey | None:
        keys = self._keys
        if keys is None:
            await self._arefresh(wait=True)
            keys = self._keys
            if keys is None:
                raise KeysUnavailable("no verification keys could be loaded")
        elif self.clock.now() - self._fetched_at >= self.ttl:
            await self._arefresh(wait=False)
            keys = self._keys or keys
        key = keys.get(kid)
        if key is None and self._may_refetch_for(kid):
            await self._arefresh(wait=True)
            key = (self._keys or keys).get(kid)
        return key

    def refresh(self) -> bool:
        """Fetch now (still subject to the throttle). Returns whether keys are loaded."""
        self._refresh(wait=True)
        return self._keys is not None

    async def arefresh(self) -> bool:
        await self._arefresh(wait=True)
        return self._keys is not None

    def _may_refetch_for(self, kid: str | None) -> bool:
        """Whether an unknown ``kid`` is worth waiting for: a fetch is in flight or allowed."""
        if kid is not None and len(kid) > MAX_KID_LENGTH:
            return False
        if self._lock.locked() or self._inflight is not None:
            return True  # join the fetch already running
        return self.clock.now() - self._last_attempt >= self.min_refetch_interval

    # -- fetching -------------------------------------------------------------------

    def _refresh(self, *, wait: bool) -> None:
        generation = self._generation
        if not self._lock.acquire(blocking=wait):
            return  # someone else is fetching; use what we have
        try:
            if self._generation != generation:
                return  # a fetch finished while we waited for the lock
            now = self.clock.now()
            if now - self._last_attempt < self.min_refetch_interval:
                return
            self._last_attempt = now
            self.fetches += 1
            try:
                loaded = self.loader() if self.loader is not None else self._fetch_sync()
                self._install(loaded, now)
            except Exception as exc:
                self.failures += 1
                log.warning("JWKS fetch failed (keeping %s cached keys): %s", self._count(), exc)
            finally:
                self._generation += 1
        finally:
            self._lock.release()

    async def _arefresh(self, *, wait: bool) -> None:
        loop = asyncio.get_running_loop()
        inflight = self._inflight
        if inflight is not None and inflight[0] is loop:
            if wait:
                await asyncio.shield(inflight[1])
            return
        now = self.clock.now()
        if now - self._last_attempt < self.min_refetch_interval:
            return
        self._last_attempt = now
        self.fetches += 1
        done: asyncio.Future[None] = loop.create_future()
        self._inflight = (loop, done)
        try:
            loaded = self.loader() if self.loader is not None else await self._fetch_async()
            self._install(loaded, now)
        except Exception as exc:
            self.failures += 1
            log.warning("JWKS fetch failed (keeping %s cached keys): %s", self._count(), exc)
        finally:
            self._generation += 1
            self._inflight = None
            done.set_result(None)

    def _count(self) -> int:
        return len(self._keys) if self._keys is not None else 0

    def _install(self, loaded: Mapping[str, Any] | KeySet, now: float) -> None:
        if loaded is self._last_loaded and self._keys is not None:
            self._fetched_at = now
            return
        keys = loaded if isinstance(loaded, KeySet) else KeySet.from_jwks(loaded)
        if not keys and self._keys:
            raise JWKSError("the JWKS has no usable key")
        self._keys = keys
        self._last_loaded = loaded
        self._fetched_at = now

    def _client_kwargs(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "follow_redirects": False, "headers": self._headers}

    def _fetch_sync(self) -> Mapping[str, Any]:
        import httpx2

        with httpx2.Client(**self._client_kwargs()) as client:
            url = self.url
            if url is None:
                url = self._resolve(self._get_sync(client, self._discovery_url()))
            return _parse_jwks(self._get_sync(client, url))

    async def _fetch_async(self) -> Mapping[str, Any]:
        import httpx2

        async with httpx2.AsyncClient(**self._client_kwargs()) as client:
            url = self.url
            if url is None:
                url = self._resolve(await self._get_async(client, self._discovery_url()))
            return _parse_jwks(await self._get_async(client, url))

    def _discovery_url(self) -> str:
        assert self._discovery is not None
        return self._discovery[0]

    def _resolve(self, body: bytes) -> str:
        assert self._discovery is not None
        meta = _parse_json_object(body, "authorization server metadata")
        expected = self._discovery[1]
        if str(meta.get("issuer", "")).rstrip("/") != expected.rstrip("/"):
            raise JWKSError(f"metadata issuer {meta.get('issuer')!r} is not {expected!r}")
        uri = meta.get("jwks_uri")
        if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
            raise JWKSError("metadata has no usable jwks_uri")
        self.url = uri  # resolved once
        return uri

    def _get_sync(self, client: Any, url: str) -> bytes:
        with client.stream("GET", url) as response:
            self._check_response(response)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise JWKSError(f"response from {url} exceeds {self.max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

    async def _get_async(self, client: Any, url: str) -> bytes:
        async with client.stream("GET", url) as response:
            self._check_response(response)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise JWKSError(f"response from {url} exceeds {self.max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

    def _check_response(self, response: Any) -> None:
        if response.status_code != 200:
            raise JWKSError(f"{response.request.url} answered {response.status_code}")
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            raise JWKSError(f"{response.request.url} sent {length} bytes (max {self.max_bytes})")


def _parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise JWKSError(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise JWKSError(f"{what} is not a JSON object")
    return data


def _parse_jwks(body: bytes) -> Mapping[str, Any]:
    return _parse_json_object(body, "JWKS")


def as_key_source(
    keys: KeySource | KeySet | Mapping[str, Any] | JWKSLoader,
    *,
    clock: Clock,
) -> KeySource:
    """Turn whatever the caller gave into a :class:`KeySource`."""
    if isinstance(keys, KeySet):
        return StaticKeys(keys)
    if isinstance(keys, Mapping):
        return StaticKeys(KeySet.from_jwks(keys))
    if isinstance(keys, JWKSCache) or (hasattr(keys, "get_key") and hasattr(keys, "aget_key")):
        return keys
    if callable(keys):
        return JWKSCache(loader=keys, ttl=60.0, min_refetch_interval=1.0, clock=clock)
    raise ConfigurationError(f"cannot use {type(keys).__name__} as verification keys")
