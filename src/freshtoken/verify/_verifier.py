"""The :class:`Verifier`: a bearer string in, typed claims or a precise error out."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

from freshtoken._clock import SYSTEM_CLOCK, Clock
from freshtoken.errors import ConfigurationError, InsufficientScope, InvalidToken
from freshtoken.verify._jwks import (
    DEFAULT_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    JWKSCache,
    JWKSLoader,
    KeySet,
    KeySource,
    VerificationKey,
    as_key_source,
)

if TYPE_CHECKING:
    from freshtoken.verify._introspect import IntrospectionChecker

MAX_TOKEN_LENGTH = 8 * 1024
ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")

# The signature may be empty here so that an `alg: none` token is named for what it is.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_b64decode = base64.urlsafe_b64decode
_STRING_CLAIMS = ("iss", "sub", "jti", "client_id")


@dataclass(frozen=True, slots=True)
class AccessTokenClaims:
    """The verified claims of an RFC 9068 access token. Immutable (safe to cache)."""

    iss: str
    sub: str
    aud: tuple[str, ...]
    exp: float
    iat: float
    jti: str
    client_id: str
    scopes: frozenset[str]
    """The ``scope`` claim split on spaces."""
    sid: str | None = None
    """The session id (absent for ``client_credentials`` tokens)."""
    nbf: float | None = None
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Every claim of the token, read-only (for custom claims)."""

    @property
    def scope(self) -> str:
        """The ``scope`` claim as a space-separated string (sorted)."""
        return " ".join(sorted(self.scopes))

    def has_scopes(self, *scopes: str) -> bool:
        return self.scopes.issuperset(scopes)


class _Header:
    __slots__ = ("alg", "kid")

    def __init__(self, alg: str, kid: str | None) -> None:
        self.alg = alg
        self.kid = kid


def _malformed(description: str) -> NoReturn:
    raise InvalidToken("malformed", description)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _b64json(segment: str, what: str, *, strict: bool = False) -> dict[str, Any]:
    try:
        raw = _b64decode(segment + "=" * (-len(segment) % 4))
        if strict:
            value = json.loads(
                raw, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
            )
        else:
            value = json.loads(raw, parse_constant=_reject_constant)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        _malformed(f"the token {what} is not base64url-encoded JSON")
    if type(value) is not dict:
        _malformed(f"the token {what} is not a JSON object")
    return value


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    kind = type(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return value  # type: ignore[no-any-return]
    _malformed(f"the {name!r} claim is not a number")


class Verifier:
    """Verifies freshtoken (RFC 9068) access tokens.

    ``keys`` is one of: a :class:`KeySet`; a JWKS dict; a callable returning the
    current JWKS dict (or a :class:`KeySet`) — for a server feeding its own key
    ring without HTTP; a :class:`JWKSCache` (or any ``KeySource``). Without
    ``keys``, the keys are fetched from ``jwks_url`` (default
    ``{issuer}/.well-known/jwks.json``). See :meth:`from_issuer` for RFC 8414
    discovery.

    ``algorithms`` is the explicit allow-list (default ES256, RS256, Ed25519; add
    ``"EdDSA"`` to accept the legacy name). Each key is bound to its own
    algorithm: a token whose ``alg`` does not match its key's is refused.

    Verified tokens are cached (``cache_size`` entries, keyed by the whole token,
    each dropped at ``exp`` + leeway); a hit still re-checks the expiry against the
    clock and the required scopes. ``cache_size=0`` disables the cache.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Iterable[str],
        keys: KeySource | KeySet | Mapping[str, Any] | JWKSLoader | None = None,
        jwks_url: str | None = None,
        algorithms: Iterable[str] | None = None,
        leeway: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
        cache_size: int = 10_000,
        max_token_length: int = MAX_TOKEN_LENGTH,
        required_claims: Iterable[str] = REQUIRED_CLAIMS,
        accepted_types: Iterable[str] = ACCEPTED_TYPES,
        introspection: IntrospectionChecker | None = None,
        jwks_ttl: float = 300.0,
        jwks_min_refetch_interval: float = 10.0,
    ) -> None:
        if not issuer:
            raise ConfigurationError("a Verifier needs an issuer")
        self.issuer = issuer
        audiences = frozenset([audience] if isinstance(audience, str) else audience)
        if not audiences or not all(isinstance(a, str) and a for a in audiences):
            raise ConfigurationError("a Verifier needs at least one audience")
        self.audiences = audiences
        algs = DEFAULT_ALGORITHMS if algorithms is None else frozenset(algorithms)
        bad = algs - SUPPORTED_ALGORITHMS
        if bad or not algs:
            raise ConfigurationError(
                f"unsupported algorithm(s) {sorted(bad)}; "
                f"choose from {sorted(SUPPORTED_ALGORITHMS)}"
            )
        self.algorithms = algs
        if leeway < 0:
            raise ConfigurationError("leeway must be >= 0")
        self.leeway = float(leeway)
        self.clock = clock
        self.max_token_length = int(max_token_length)
        self.required_claims = tuple(required_claims)
        self.accepted_types = frozenset(t.lower() for t in accepted_types)
        self.introspection = introspection
        if keys is None:
            url = jwks_url or issuer.rstrip("/") + "/.well-known/jwks.json"
            keys = JWKSCache(
                url, ttl=jwks_ttl, min_refetch_interval=jwks_min_refetch_interval, clock=clock
            )
        elif jwks_url is not None:
            raise ConfigurationError("give keys= or jwks_url=, not both")
        self.keys: KeySource = as_key_source(keys, clock=clock)
        self._cache_size = int(cache_size)
        self._cache: OrderedDict[str, tuple[AccessTokenClaims, float]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._headers: dict[str, _Header] = {}

    @classmethod
    def from_issuer(cls, issuer: str, *, audience: str | Iterable[str], **kwargs: Any) -> Verifier:
        """A verifier whose keys come from the ``jwks_uri`` of the issuer's RFC 8414 metadata.

        Discovery is lazy (on the first token), so this never blocks or fails at
        start-up. ``jwks_ttl``, ``jwks_min_refetch_interval`` and ``clock`` apply
        to the key cache.
        """
        clock = kwargs.get("clock", SYSTEM_CLOCK)
        cache = JWKSCache.from_issuer(
            issuer,
            ttl=kwargs.pop("jwks_ttl", 300.0),
            min_refetch_interval=kwargs.pop("jwks_min_refetch_interval", 10.0),
            clock=clock,
        )
        return cls(issuer=issuer, audience=audience, keys=cache, **kwargs)

    # -- public API ---------------------------------------------------------------------

    def verify(self, token: str, *, required_scopes: Iterable[str] = ()) -> AccessTokenClaims:
        """Verify ``token``; raise :class:`InvalidToken` or :class:`InsufficientScope`."""
        entry = self._cache.get(token)
        if entry is not None and self.clock.now() < entry[1]:
            claims = entry[0]
        else:
            header, parts = self._parse(token)
            key = self.keys.get_key(header.kid)
            claims = self._finish(token, header, parts, key)
        if required_scopes:
            self._check_scopes(claims, required_scopes)
        if self.introspection is not None:
            self.introspection.check(token)
        return claims

    async def averify(
        self, token: str, *, required_scopes: Iterable[str] = ()
    ) -> AccessTokenClaims:
        """Async :meth:`verify`: the same checks; key fetches do not block the loop."""
        entry = self._cache.get(token)
        if entry is not None and self.clock.now() < entry[1]:
            claims = entry[0]
        else:
            header, parts = self._parse(token)
            key = await self.keys.aget_key(header.kid)
            claims = self._finish(token, header, parts, key)
        if required_scopes:
            self._check_scopes(claims, required_scopes)
        if self.introspection is not None:
            await self.introspection.acheck(token)
        return claims

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    # -- internals ----------------------------------------------------------------------

    @staticmethod
    def _check_scopes(claims: AccessTokenClaims, required: Iterable[str]) -> None:
        needed = frozenset(required)
        if not claims.scopes.issuperset(needed):
            raise InsufficientScope(needed, claims.scopes)

    def _parse(self, token: str) -> tuple[_Header, list[str]]:
        if type(token) is not str:
            _malformed("the token is not a string")
        if len(token) > self.max_token_length:
            _malformed(f"the token is longer than {self.max_token_length} characters")
        if not _TOKEN_RE.fullmatch(token):
            if not token:
                _malformed("the token is empty")
            if token.count(".") != 2:
                _malformed("a JWT has three dot-separated segments")
            _malformed("the token segments are not base64url")
        parts = token.split(".")
        header = self._headers.get(parts[0])
        if header is None:
            header = self._parse_header(parts[0])
        return header, parts

    def _parse_header(self, segment: str) -> _Header:
        data = _b64json(segment, "header", strict=True)
        alg = data.get("alg")
        if not isinstance(alg, str):
            _malformed("the token header has no 'alg'")
        if alg not in self.algorithms:
            raise InvalidToken("wrong_algorithm", "the token algorithm is not allowed")
        typ = data.get("typ")
        if not isinstance(typ, str) or typ.lower() not in self.accepted_types:
            raise InvalidToken("wrong_type", "the token is not an access token (typ at+jwt)")
        if "crit" in data:
            _malformed("the token has critical header parameters this verifier does not support")
        kid = data.get("kid")
        if kid is not None and not isinstance(kid, str):
            _malformed("the token 'kid' is not a string")
        # jku, x5u, jwk, x5c: ignored on purpose. Keys come only from our key source.
        header = _Header(alg, kid)
        if len(self._headers) >= 256:
            self._headers.clear()
        self._headers[segment] = header
        return header

    def _finish(
        self, token: str, header: _Header, parts: list[str], key: VerificationKey | None
    ) -> AccessTokenClaims:
        if key is None:
            raise InvalidToken("unknown_key", "the token 'kid' is not a known key")
        if header.alg not in key.algorithms:
            raise InvalidToken("wrong_algorithm", "the token algorithm does not match its key")
        sig_segment = parts[2]
        try:
            signature = _b64decode(sig_segment + "=" * (-len(sig_segment) % 4))
        except (binascii.Error, ValueError):
            _malformed("the token signature is not base64url")
        signing_input = token[: len(parts[0]) + len(parts[1]) + 1].encode("ascii")
        if not key.verify(signature, signing_input):
            raise InvalidToken("bad_signature", "the token signature is invalid")
        return self._check_claims(token, _b64json(parts[1], "payload"))

    def _check_claims(self, token: str, payload: dict[str, Any]) -> AccessTokenClaims:
        for name in self.required_claims:
            if payload.get(name) is None:
                raise InvalidToken("missing_claim", f"the token has no {name!r} claim")
        for name in _STRING_CLAIMS:
            value = payload.get(name)
            if value is not None and type(value) is not str:
                _malformed(f"the {name!r} claim is not a string")
        exp = _number(payload, "exp")
        iat = _number(payload, "iat")
        nbf = _number(payload, "nbf")
        now = self.clock.now()
        leeway = self.leeway
        if exp is not None and now >= exp + leeway:
            raise InvalidToken("expired", "the token has expired")
        if nbf is not None and nbf > now + leeway:
            raise InvalidToken("not_yet_valid", "the token is not valid yet (nbf)")
        if iat is not None and iat > now + leeway:
            raise InvalidToken("not_yet_valid", "the token was issued in the future (iat)")
        if payload.get("iss") != self.issuer:
            raise InvalidToken("wrong_issuer", "the token was issued by another issuer")
        aud = payload.get("aud")
        if type(aud) is str:
            auds: tuple[str, ...] = (aud,)
        elif type(aud) is list and all(type(a) is str for a in aud):
            auds = tuple(aud)
        elif aud is None:
            auds = ()
        else:
            _malformed("the 'aud' claim is not a string or a list of strings")
        if self.audiences.isdisjoint(auds):
            raise InvalidToken("wrong_audience", "the token is not meant for this audience")
        scope = payload.get("scope", "")
        if type(scope) is not str:
            _malformed("the 'scope' claim is not a string")
        sid = payload.get("sid")
        if sid is not None and type(sid) is not str:
            _malformed("the 'sid' claim is not a string")
        claims = AccessTokenClaims(
            payload.get("iss", ""),
            payload.get("sub", ""),
            auds,
            exp if exp is not None else math.inf,
            iat if iat is not None else 0,
            payload.get("jti", ""),
            payload.get("client_id", ""),
            frozenset(scope.split()),
            sid,
            nbf,
            MappingProxyType(payload),
        )
        if self._cache_size > 0 and exp is not None:
            self._remember(token, claims, exp + leeway)
        return claims

    def _remember(self, token: str, claims: AccessTokenClaims, deadline: float) -> None:
        cache = self._cache
        with self._cache_lock:
            cache[token] = (claims, deadline)
            if len(cache) > self._cache_size:
                now = self.clock.now()
                # Drop the oldest entry, and any expired ones found at the front.
                cache.popitem(last=False)
                while cache:
                    first = next(iter(cache.values()))
                    if first[1] > now:
                        break
                    cache.popitem(last=False)
