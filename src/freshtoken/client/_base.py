"""What every adapter shares: configuration, the session, and the effect runners."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from freshtoken._clock import Clock
from freshtoken.client._events import EventHook
from freshtoken.client._session import (
    Call,
    HttpRequest,
    Invoke,
    Predicate,
    Retry,
    Sleep,
    TokenSession,
    TokenSet,
    TokenStore,
    Wait,
)
from freshtoken.client._transport import SyncClients, perform_async
from freshtoken.client.refreshers import as_refresher
from freshtoken.client.stores import MemoryStore
from freshtoken.errors import ConfigurationError

SKIP_HEADER = "X-Freshtoken-Skip"
NOTE_HEADER = "X-Freshtoken-Note"


class TokenAuthBase:
    """Configuration and state shared by the httpx (sync + async) and requests adapters."""

    def __init__(
        self,
        refresher: Any,
        store: TokenStore | None = None,
        *,
        on_session_expired: Callable[[str], Any] | None = None,
        leeway: float = 30.0,
        refresh_on: Iterable[int] = (401,),
        should_refresh: Predicate | None = None,
        on_event: EventHook | Iterable[EventHook] | None = None,
        retry: Retry | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.session = TokenSession(
            as_refresher(refresher),
            store if store is not None else MemoryStore(),
            leeway=leeway,
            refresh_on=refresh_on,
            should_refresh=should_refresh,
            on_session_expired=on_session_expired,
            on_event=on_event,
            retry=retry,
            clock=clock,
        )
        self._sleep = sleep or time.sleep
        self._async_sleep = async_sleep or asyncio.sleep
        self._clients = SyncClients()

    def __repr__(self) -> str:
        s = self.session
        return f"{type(self).__name__}(refresher={s.refresher!r}, store={s.store!r})"

    # -- public conveniences -----------------------------------------------------------

    @property
    def store(self) -> TokenStore:
        return self.session.store

    @property
    def tokens(self) -> TokenSet | None:
        """The tokens in use (loaded from the store on first use)."""
        return self.session.tokens or self.session.store.load()

    def set_tokens(self, tokens: TokenSet | Mapping[str, Any]) -> TokenSet:
        """Start a session from a TokenSet or an OAuth token answer; saves it to the store."""
        if not isinstance(tokens, TokenSet):
            tokens = TokenSet.from_answer(tokens, now=self.session.server_now())
        self.session.store.save(tokens)
        self.session.set_tokens(tokens)
        return tokens

    def clear(self) -> None:
        """Forget the tokens (memory and store), e.g. on logout."""
        self.session.store.clear()
        self.session.set_tokens(None)

    def close(self) -> None:
        """Close the private HTTP client used for refresh calls."""
        self._clients.close()

    # -- effect runners (used by every driver) -------------------------------------------

    def run_sync(self, effect: Any, lib: str | None) -> Any:
        kind = type(effect)
        if kind is Call:
            return effect.fn(*effect.args)
        if kind is HttpRequest:
            return self._clients.perform(lib, effect)
        if kind is Wait:
            effect.flight.wait()
            return None
        if kind is Sleep:
            self._sleep(effect.seconds)
            return None
        if kind is Invoke:
            result = effect.fn(*effect.args)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise ConfigurationError(
                    "an async refresh callable needs an async client (httpx2.AsyncClient)"
                )
            return result
        raise TypeError(f"unknown effect {effect!r}")

    async def run_async(self, effect: Any, lib: str) -> Any:
        kind = type(effect)
        if kind is Call:
            if effect.undo is None:
                return await asyncio.to_thread(effect.fn, *effect.args)
            # A lock acquired in a worker thread after we were cancelled must be released.
            task = asyncio.ensure_future(asyncio.to_thread(effect.fn, *effect.args))
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                undo = effect.undo

                def release(done: asyncio.Future[Any]) -> None:
                    if not done.cancelled() and done.exception() is None:
                        undo()

                task.add_done_callback(release)
                raise
        if kind is HttpRequest:
            return await perform_async(lib, effect)
        if kind is Wait:
            await effect.flight.future()
            return None
        if kind is Sleep:
            await self._async_sleep(effect.seconds)
            return None
        if kind is Invoke:
            result = effect.fn(*effect.args)
            if inspect.isawaitable(result):
                result = await result
            return result
        raise TypeError(f"unknown effect {effect!r}")
