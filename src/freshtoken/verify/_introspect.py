"""Optional online check of access tokens through RFC 7662 introspection."""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from freshtoken._clock import SYSTEM_CLOCK, Clock
from freshtoken.errors import ConfigurationError, FreshtokenError, InvalidToken

_MAX_BODY = 64 * 1024


class IntrospectionUnavailable(FreshtokenError):
    """The introspection endpoint could not give an answer (down, slow, 5xx, bad auth).

    With ``fail_open=False`` (the default) the middleware answers 503.
    """


class IntrospectionChecker:
    """Asks the auth server whether a token is still active (RFC 7662).

    Use it with ``Verifier(..., introspection=IntrospectionChecker(...))`` in
    deployments that want revocation to take effect at once rather than when
    the access token expires. The local checks still run first (a forged token
    never reaches the network); answers are cached for ``ttl`` seconds per
    token (default 5 s — the upper bound on how late a revocation is noticed).

    The resource server authenticates as a confidential client with
    ``client_secret_basic`` (default) or ``client_secret_post``.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        client_secret: str,
        ttl: float = 5.0,
        timeout: float = 3.0,
        cache_size: int = 10_000,
        clock: Clock = SYSTEM_CLOCK,
        auth_method: str = "client_secret_basic",
        fail_open: bool = False,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError(f"introspection URL must be http(s): {url!r}")
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError(f"unsupported auth_method {auth_method!r}")
        self.url = url
        self.client_id = client_id
        self._secret = client_secret
        self.ttl = float(ttl)
        self.timeout = float(timeout)
        self.clock = clock
        self.auth_method = auth_method
        self.fail_open = fail_open
        self._cache_size = int(cache_size)
        self._cache: OrderedDict[str, tuple[float, Mapping[str, Any] | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._client: Any = None
        self.requests = 0
        """Introspection requests sent so far (cache misses)."""

    @classmethod
    def for_issuer(cls, issuer: str, **kwargs: Any) -> IntrospectionChecker:
        """Use ``{issuer}/oauth/introspect`` (the freshtoken server's endpoint)."""
        return cls(issuer.rstrip("/") + "/oauth/introspect", **kwargs)

    # -- public API ---------------------------------------------------------------

    def check(self, token: str) -> Mapping[str, Any] | None:
        """Return the introspection answer; raise ``InvalidToken("inactive")`` if inactive.

        Returns ``None`` when the endpoint failed and ``fail_open`` is set.
        """
        cached = self._cached(token)
        if cached is not None:
            return self._judge(cached[1])
        try:
            answer = self._interpret(self._post_sync(token))
        except IntrospectionUnavailable:
            if self.fail_open:
                return None
            raise
        self._store(token, answer)
        return self._judge(answer)

    async def acheck(self, token: str) -> Mapping[str, Any] | None:
        cached = self._cached(token)
        if cached is not None:
            return self._judge(cached[1])
        try:
            answer = self._interpret(await self._post_async(token))
        except IntrospectionUnavailable:
            if self.fail_open:
                return None
            raise
        self._store(token, answer)
        return self._judge(answer)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- internals ----------------------------------------------------------------

    def _cached(self, token: str) -> tuple[float, Mapping[str, Any] | None] | None:
        entry = self._cache.get(token)
        if entry is not None and self.clock.now() < entry[0]:
            return entry
        return None

    def _store(self, token: str, answer: Mapping[str, Any] | None) -> None:
        if self.ttl <= 0 or self._cache_size <= 0:
            return
        with self._lock:
            self._cache[token] = (self.clock.now() + self.ttl, answer)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    @staticmethod
    def _judge(answer: Mapping[str, Any] | None) -> Mapping[str, Any]:
        if answer is None:
            raise InvalidToken("inactive", "the token is no longer active")
        return answer

    @staticmethod
    def _interpret(body: bytes) -> Mapping[str, Any] | None:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise IntrospectionUnavailable("introspection answer is not JSON") from None
        if not isinstance(data, dict) or "active" not in data:
            raise IntrospectionUnavailable("introspection answer has no 'active' member")
        return data if data["active"] is True else None

    def _request_parts(self, token: str) -> tuple[dict[str, str], dict[str, str]]:
        form = {"token": token, "token_type_hint": "access_token"}
        headers = {"Accept": "application/json"}
        if self.auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: form-urlencode id and secret before base64.
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = self._secret
        return form, headers

    def _answer(self, response: Any) -> bytes:
        if response.status_code != 200:
            raise IntrospectionUnavailable(
                f"introspection endpoint answered {response.status_code}"
            )
        body: bytes = response.content
        if len(body) > _MAX_BODY:
            raise IntrospectionUnavailable("introspection answer is too large")
        return body

    def _post_sync(self, token: str) -> bytes:
        import httpx2

        form, headers = self._request_parts(token)
        try:
            if self._client is None:
                with self._lock:
                    if self._client is None:
                        self._client = httpx2.Client(timeout=self.timeout, follow_redirects=False)
            self.requests += 1
            response = self._client.post(self.url, data=form, headers=headers)
        except httpx2.HTTPError as exc:
            raise IntrospectionUnavailable(f"introspection failed: {exc!r}") from None
        return self._answer(response)

    async def _post_async(self, token: str) -> bytes:
        import httpx2

        form, headers = self._request_parts(token)
        try:
            self.requests += 1
            async with httpx2.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
                response = await client.post(self.url, data=form, headers=headers)
        except httpx2.HTTPError as exc:
            raise IntrospectionUnavailable(f"introspection failed: {exc!r}") from None
        return self._answer(response)
