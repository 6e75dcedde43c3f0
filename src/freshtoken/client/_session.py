"""The sans-IO core of the client: token state and every decision about it.

:class:`TokenSession` never does I/O itself. Its flows are generators that
*yield effects* and receive their results; three thin drivers (httpx sync, httpx
async, requests) run them. One state machine, three drivers:

* a :class:`TokenSet` yielded by a flow means "send the user's request with this
  token and give me the response back";
* :class:`HttpRequest` means "perform this refresh call, give me an :class:`HttpResponse`";
* :class:`Call` means "run this (possibly blocking) store operation";
* :class:`Invoke` means "call this user callable (await it in async code)";
* :class:`Sleep` means "wait that many seconds" (backoff);
* :class:`Wait` means "wait until this in-flight refresh is over".

Single-flight: a refresh is a :class:`Flight`. The first request that needs a
refresh leads it; every other request (thread, asyncio task, any event loop)
waits for it and uses its result. Across processes the leader takes the store's
lock, re-reads the store and refreshes only if nobody else already did.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from freshtoken._clock import SYSTEM_CLOCK, Clock
from freshtoken.client._events import EventHook, RefreshEvent, emit, logger
from freshtoken.errors import (
    ConfigurationError,
    FreshtokenError,
    NoTokens,
    RefreshFailed,
    SessionExpired,
    TokenStoreError,
)

# --- tokens -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenSet:
    """The tokens of one session at one moment.

    ``expires_at`` is the access token's expiry in the token server's time
    (seconds since the epoch), or ``None`` when unknown. ``generation`` rises by
    one on every refresh. ``repr()`` never shows a token value.
    """

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    generation: int = 0
    scope: str | None = None

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token=<{len(self.access_token)} chars>, "
            f"refresh_token={'<set>' if self.refresh_token else None}, "
            f"expires_at={self.expires_at!r}, generation={self.generation}, scope={self.scope!r})"
        )

    __str__ = __repr__

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "generation": self.generation,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenSet:
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise TokenStoreError("stored tokens have no access_token")
        refresh = data.get("refresh_token")
        expires_at = data.get("expires_at")
        scope = data.get("scope")
        return cls(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=float(expires_at) if isinstance(expires_at, int | float) else None,
            generation=int(data.get("generation") or 0),
            scope=scope if isinstance(scope, str) else None,
        )

    @classmethod
    def from_answer(
        cls,
        answer: Mapping[str, Any],
        *,
        now: float | None = None,
        generation: int = 0,
    ) -> TokenSet:
        """Build a TokenSet from an OAuth token answer (``access_token``, ``expires_in``, ...)."""
        parsed = TokenAnswer.from_mapping(answer)
        return parsed.to_token_set(
            now=time.time() if now is None else now, previous=None, generation=generation
        )


def jwt_exp(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read WITHOUT verification (only to schedule a refresh)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """A successful refresh or login answer, already parsed."""

    access_token: str
    refresh_token: str | None = None
    expires_in: float | None = None
    scope: str | None = None
    server_date: float | None = None
    expires_at: float | None = None  # absolute, when the source knows it (a TokenSet)

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        access_field: str = "access_token",
        refresh_field: str = "refresh_token",
        expires_in_field: str = "expires_in",
        scope_field: str = "scope",
        where: str = "the token endpoint",
    ) -> TokenAnswer:
        access = lookup(data, access_field)
        if not isinstance(access, str) or not access:
            keys = ", ".join(sorted(str(k) for k in data)) or "none"
            raise ConfigurationError(
                f"{where} answered JSON without {access_field!r} (fields present: {keys}); "
                "check the URL and the field names"
            )
        refresh = lookup(data, refresh_field)
        expires_in = lookup(data, expires_in_field)
        if isinstance(expires_in, str):
            try:
                expires_in = float(expires_in)
            except ValueError:
                expires_in = None
        scope = lookup(data, scope_field)
        return cls(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_in=float(expires_in)
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else None,
            scope=scope if isinstance(scope, str) else None,
        )

    def to_token_set(self, *, now: float, previous: TokenSet | None, generation: int) -> TokenSet:
        """``now`` is the token server's current time (local time corrected for skew)."""
        if self.expires_at is not None:
            expires_at: float | None = self.expires_at
        elif self.expires_in is not None:
            expires_at = now + self.expires_in
        else:
            expires_at = jwt_exp(self.access_token)
        return TokenSet(
            access_token=self.access_token,
            # Never lose a rotated token: keep the old refresh token when none came back.
            refresh_token=self.refresh_token
            or (previous.refresh_token if previous is not None else None),
            expires_at=expires_at,
            generation=generation,
            scope=self.scope or (previous.scope if previous is not None else None),
        )


def lookup(data: Mapping[str, Any], path: str) -> Any:
    """``data[path]``, where a dotted path (``"data.accessToken"``) walks nested objects."""
    if path in data:
        return data[path]
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


# --- effects ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A refresh (or login) call for a driver to perform with its HTTP library."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What the driver got back. ``error`` is set (and ``status`` is 0) when no answer came."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    error: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Call:
    """Run ``fn(*args)``; it may block (file lock, disk, Redis), so async drivers use a thread."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    undo: Callable[[], Any] | None = None  # run if the caller gave up but fn completed


@dataclass(frozen=True, slots=True)
class Invoke:
    """Call a user callable; async drivers await the result when it is awaitable."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Wait:
    flight: Flight


# --- refresh outcomes the refreshers report -------------------------------------


class TransientRefreshError(FreshtokenError):
    """A refresh attempt failed in a way worth retrying (network, timeout, 5xx, 429)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class TerminalRefreshError(FreshtokenError):
    """The token endpoint said no for good (``invalid_grant``, 400/401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


class Refresher(Protocol):
    """Turns a refresh token into a :class:`TokenAnswer`.

    ``flow`` is a sans-IO generator: it yields :class:`HttpRequest` (receiving an
    :class:`HttpResponse`) or :class:`Invoke` effects and returns the answer, or raises
    :class:`TransientRefreshError`, :class:`TerminalRefreshError` or
    :class:`~freshtoken.ConfigurationError`.
    """

    def flow(self, tokens: TokenSet) -> Generator[Any, Any, TokenAnswer]: ...


# --- store protocol -------------------------------------------------------------------


class StoreLock(Protocol):
    def acquire(self) -> None: ...
    def release(self) -> None: ...


class TokenStore(Protocol):
    """Where tokens live between requests and between processes."""

    def load(self) -> TokenSet | None: ...
    def save(self, tokens: TokenSet) -> None: ...
    def clear(self) -> None: ...
    def lock(self) -> StoreLock:
        """A lock shared by everyone who uses the same store (threads, processes, machines)."""
        ...


# --- single flight ---------------------------------------------------------------------


class Flight:
    """One refresh in progress. Waiters from threads and from any event loop can join."""

    __slots__ = ("_event", "_futures", "_lock", "done", "error", "result", "waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.done = False
        self.result: TokenSet | None = None
        self.error: BaseException | None = None
        self.waiters = 0

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def future(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self.done:
                self._futures.append((loop, fut))
                return fut
        fut.set_result(None)
        return fut

    def finish(self, result: TokenSet | None, error: BaseException | None) -> None:
        with self._lock:
            self.result = result
            self.error = error
            self.done = True
            futures, self._futures = self._futures, []
        self._event.set()
        for loop, fut in futures:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, fut)

    def outcome(self) -> TokenSet:
        if self.error is not None:
            if not isinstance(self.error, Exception):  # the leader was cancelled / closed
                raise RefreshFailed("the request that was refreshing was cancelled; try again")
            raise _copy_error(self.error)
        assert self.result is not None
        return self.result


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _copy_error(error: BaseException) -> BaseException:
    """A fresh exception per waiter, so concurrent raisers don't share one traceback."""
    try:
        if isinstance(error, SessionExpired):
            copy: BaseException = SessionExpired(error.reason)
        else:
            copy = type(error)(*error.args)
    except Exception:
        return error
    copy.__cause__ = error.__cause__
    return copy


# --- retry policy ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retry:
    """Bounded exponential backoff with jitter for transient refresh failures.

    Attempt ``n`` (1-based retry) waits a random time in ``[d/2, d]`` with
    ``d = min(max_delay, base_delay * 2**(n-1))``, or the server's ``Retry-After``
    when that is longer (capped at ``max_retry_after``). After ``attempts`` retries
    the refresh gives up with :class:`~freshtoken.RefreshFailed`; tokens are kept.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 10.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        wait = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


# --- the session ------------------------------------------------------------------------

NOT_REPLAYED_NOTE = (
    "freshtoken: the server answered {status} but the request body is a stream that "
    "cannot be sent twice, so the request was not retried; the token has been refreshed, "
    "send the request again"
)

Predicate = Callable[[Any], bool]


class TokenSession:
    """Token state plus the decisions: is it fresh, who refreshes, what to retry.

    Thread-safe and event-loop agnostic. The fast path (token fresh, answer not a
    401) takes no lock.
    """

    def __init__(
        self,
        refresher: Refresher,
        store: TokenStore,
        *,
        leeway: float = 30.0,
        refresh_on: Iterable[int] = (401,),
        should_refresh: Predicate | None = None,
        on_session_expired: Callable[[str], Any] | None = None,
        on_event: EventHook | Iterable[EventHook] | None = None,
        retry: Retry | None = None,
        clock: Clock | None = None,
    ) -> None:
        if leeway < 0:
            raise ConfigurationError("leeway must be >= 0")
        self.refresher = refresher
        self.store = store
        self.leeway = float(leeway)
        self.refresh_on = frozenset(refresh_on)
        self.should_refresh = should_refresh
        self.on_session_expired = on_session_expired
        if on_event is None:
            self.hooks: tuple[EventHook, ...] = ()
        elif callable(on_event):
            self.hooks = (on_event,)
        else:
            self.hooks = tuple(on_event)
        self.retry = retry or Retry()
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.skew = 0.0  # token server time minus local time, learned from Date headers
        self._tokens: TokenSet | None = None
        self._mutex = threading.Lock()
        self._flight: Flight | None = None
        self._ended: str | None = None  # refresh token of the session whose end we announced
        self._end_reason: str | None = None

    # -- state -----------------------------------------------------------------------

    @property
    def tokens(self) -> TokenSet | None:
        return self._tokens

    def set_tokens(self, tokens: TokenSet | None) -> None:
        """Replace the in-memory tokens (the store is not touched)."""
        with self._mutex:
            self._tokens = tokens
            if tokens is not None:
                self._end_reason = None

    def server_now(self) -> float:
        return self.clock.now() + self.skew

    def is_expiring(self, tokens: TokenSet) -> bool:
        exp = tokens.expires_at
        return exp is not None and exp - self.leeway <= self.clock.now() + self.skew

    def observe_date(self, date_header: str | None) -> None:
        """Learn the clock skew from a server's ``Date`` header (1 s resolution)."""
        server = parse_http_date(date_header)
        if server is None:
            return
        diff = server + 0.5 - self.clock.now()
        # Within the header's resolution plus a round trip we cannot tell: assume none.
        self.skew = diff if abs(diff) > 2.0 else 0.0

    def is_refresh_worthy(self, response: Any) -> bool:
        if response.status_code in self.refresh_on:
            return True
        return self.should_refresh is not None and bool(self.should_refresh(response))

    # -- the per-request flow -----------------------------------------------------------

    def request_flow(self, replayable: bool = True) -> Generator[Any, Any, str | None]:
        """Drive one user request. Yields a TokenSet to send with, receives the response.

        Returns ``None``, or a note for the caller when a retry was not possible.
        """
        tokens = self._tokens
        if tokens is None:
            tokens = yield from self._load()
        refreshed = False
        exp = tokens.expires_at
        if exp is not None and exp - self.leeway <= self.clock.now() + self.skew:
            tokens = yield from self.refresh(tokens, "expiring")
            refreshed = True
        response = yield tokens
        status = response.status_code
        if status not in self.refresh_on and (
            self.should_refresh is None or not self.should_refresh(response)
        ):
            return None
        self.observe_date(response.headers.get("date"))
        current = self._tokens
        if current is not None and current.access_token != tokens.access_token:
            # Sent with an older generation: someone refreshed meanwhile. Retry, no refresh.
            if not replayable:
                return NOT_REPLAYED_NOTE.format(status=status)
            yield current
            return None
        if refreshed:
            return None  # a brand-new token was refused: that is not an expiry problem
        new = yield from self.refresh(tokens, str(status))
        if not replayable:
            logger.warning(NOT_REPLAYED_NOTE.format(status=status))
            return NOT_REPLAYED_NOTE.format(status=status)
        yield new
        return None

    def _load(self) -> Generator[Any, Any, TokenSet]:
        # Once per session: load under the mutex so a burst of first requests reads once.
        with self._mutex:
            if self._tokens is None:
                self._tokens = self.store.load()
            loaded = self._tokens
        if loaded is None:
            if self._end_reason is not None:
                raise NoTokens(
                    f"no tokens in the store: the session ended ({self._end_reason}); log in again"
                )
            raise NoTokens(
                f"no tokens in {self.store!r}: log in first "
                "(freshtoken.login(...) or auth.set_tokens(...))"
            )
        return loaded
        yield  # a generator, like every flow step

    # -- refresh (single flight) -------------------------------------------------------

    def refresh(self, seen: TokenSet | None, reason: str) -> Generator[Any, Any, TokenSet]:
        """Make sure the tokens are newer than ``seen``: lead a refresh, or wait for one."""
        with self._mutex:
            current = self._tokens
            if current is None and self._end_reason is not None and seen is not None:
                raise SessionExpired(self._end_reason)
            if (
                current is not None
                and seen is not None
                and current.access_token != seen.access_token
                and not (reason == "expiring" and self.is_expiring(current))
            ):
                return current
            flight = self._flight
            if flight is None:
                flight = self._flight = Flight()
                leader = True
            else:
                flight.waiters += 1
                leader = False
        if not leader:
            yield Wait(flight)
            return flight.outcome()
        result: TokenSet | None = None
        error: BaseException | None = None
        try:
            result = yield from self._lead(current if current is not None else seen, reason, flight)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            with self._mutex:
                self._flight = None
            flight.finish(result, error)

    def _lead(
        self, seen: TokenSet | None, reason: str, flight: Flight
    ) -> Generator[Any, Any, TokenSet]:
        started = time.monotonic()
        lock = self.store.lock()
        yield Call(lock.acquire, undo=lock.release)
        try:
            stored: TokenSet | None = yield Call(self.store.load)
            if stored is None:
                if seen is None:
                    raise NoTokens(f"no tokens in {self.store!r}: log in first")
                # Someone (a logout, another process ending the session) emptied the store.
                raise self._end_session(seen, "the token store was cleared")
            newer = seen is None or stored.access_token != seen.access_token
            if newer and (reason != "expiring" or not self.is_expiring(stored)):
                # Another process refreshed (or logged in) meanwhile: adopt, don't refresh.
                self._adopt(stored, flight, "stored tokens are newer")
                return stored
            base = stored
            if base.refresh_token is None:
                raise self._end_session(
                    base, "the access token expired and there is no refresh token"
                )
            emit(
                self.hooks,
                RefreshEvent("refresh_started", base.generation, flight.waiters, 1, reason),
            )
            try:
                answer = yield from self._refresh_with_retries(base, flight, started)
            except TerminalRefreshError as terminal:
                # Did another process rotate the token meanwhile? Then ours was stale.
                again: TokenSet | None = yield Call(self.store.load)
                if again is not None and again.refresh_token != base.refresh_token:
                    self._adopt(again, flight, f"{terminal.reason}, but the store has newer tokens")
                    return again
                emit(
                    self.hooks,
                    RefreshEvent(
                        "refresh_failed",
                        base.generation,
                        flight.waiters,
                        reason=terminal.reason,
                        duration=time.monotonic() - started,
                    ),
                )
                yield Call(self.store.clear)
                raise self._end_session(base, terminal.reason) from None
            new = answer.to_token_set(
                now=self.server_now(), previous=base, generation=base.generation + 1
            )
            try:
                yield Call(self.store.save, (new,))
            except Exception as exc:
                # Keep the rotated token in memory (the old one is spent), but stop here.
                self.set_tokens(new)
                raise TokenStoreError(
                    f"the refresh succeeded but saving the new tokens to {self.store!r} failed: "
                    f"{exc}"
                ) from exc
            self.set_tokens(new)
            emit(
                self.hooks,
                RefreshEvent(
                    "refresh_succeeded",
                    new.generation,
                    flight.waiters,
                    reason=reason,
                    duration=time.monotonic() - started,
                ),
            )
            return new
        finally:
            lock.release()

    def _adopt(self, stored: TokenSet, flight: Flight, why: str) -> None:
        self.set_tokens(stored)
        emit(
            self.hooks,
            RefreshEvent("tokens_adopted", stored.generation, flight.waiters, reason=why),
        )

    def _refresh_with_retries(
        self, base: TokenSet, flight: Flight, started: float
    ) -> Generator[Any, Any, TokenAnswer]:
        attempt = 1
        while True:
            try:
                answer: TokenAnswer = yield from self.refresher.flow(base)
            except TransientRefreshError as exc:
                if attempt > self.retry.attempts:
                    emit(
                        self.hooks,
                        RefreshEvent(
                            "refresh_failed",
                            base.generation,
                            flight.waiters,
                            attempt,
                            exc.reason,
                            time.monotonic() - started,
                        ),
                    )
                    raise RefreshFailed(
                        f"refresh failed {attempt} times, giving up (tokens kept): {exc.reason}"
                    ) from exc
                delay = self.retry.delay(attempt, exc.retry_after)
                emit(
                    self.hooks,
                    RefreshEvent(
                        "refresh_retrying", base.generation, flight.waiters, attempt, exc.reason
                    ),
                )
                attempt += 1
                yield Sleep(delay)
                continue
            if answer.server_date is not None:
                self._observe_server_date(answer.server_date)
            return answer

    def _observe_server_date(self, server: float) -> None:
        diff = server + 0.5 - self.clock.now()
        self.skew = diff if abs(diff) > 2.0 else 0.0

    def _end_session(self, base: TokenSet, reason: str) -> SessionExpired:
        """Forget the tokens; call the hook once per session end; return the error to raise."""
        with self._mutex:
            self._tokens = None
            self._end_reason = reason
            announce = self._ended != (base.refresh_token or base.access_token)
            self._ended = base.refresh_token or base.access_token
        if announce:
            emit(self.hooks, RefreshEvent("session_expired", base.generation, reason=reason))
            if self.on_session_expired is not None:
                try:
                    self.on_session_expired(reason)
                except Exception:
                    logger.exception("on_session_expired raised (ignored)")
        return SessionExpired(reason)

    # -- helpers for drivers -------------------------------------------------------------

    def replace_tokens(self, **changes: Any) -> None:
        with self._mutex:
            if self._tokens is not None:
                self._tokens = replace(self._tokens, **changes)
