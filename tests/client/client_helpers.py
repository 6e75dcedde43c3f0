"""Helpers for the client tests: a fault-injecting ASGI middleware in front of the
real server, and the same calls through each HTTP library."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from freshtoken.client import MemoryStore, OAuth2Refresher, Retry, TokenAuth, TokenSet
from freshtoken.testing import LiveServer

SYNC_LIBS = ["httpx2", "httpx", "requests"]
ASYNC_LIBS = ["httpx2", "httpx"]
FAST_RETRY = Retry(attempts=3, base_delay=0.001, max_delay=0.005)


class Faults:
    """ASGI middleware in front of the real server.

    * records every request (path, Authorization header) and every token call;
    * ``token_answers``: canned answers for the next token-endpoint calls
      (status, headers, body) — 503s, 429s, HTML, JSON without access_token;
    * ``strip``: fields removed from token answers (``expires_in``, ``refresh_token``);
    * ``hold_token``: an Event the token endpoint waits for (``token_waiting`` is set
      when a token call is parked);
    * ``before_token``: a callable run (in a thread) with the token form before the
      server sees it;
    * test routes: ``/t/always401``, ``/t/strict`` (valid server token, not in
      ``revoked``; reads the body), ``/t/held`` (like strict, but captures the token
      on arrival and answers only after ``release_held`` is set), ``/t/once419``.
    """

    def __init__(self) -> None:
        self.app: Any = None
        self.srv: LiveServer | None = None
        self.requests: list[tuple[str, str | None]] = []
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.token_calls = 0
        self.token_answers: list[tuple[int, dict[str, str], bytes]] = []
        self.strip: set[str] = set()
        self.hold_token: threading.Event | None = None
        self.token_waiting = threading.Event()
        self.before_token: Callable[[dict[str, str]], None] | None = None
        self.revoked: set[str] = set()
        self.release_held = threading.Event()
        self.held_arrived = threading.Event()
        self.once419_done = False
        self.lock = threading.Lock()

    def wrap(self, app: Any) -> Faults:
        self.app = app
        return self

    async def _body(self, receive: Any) -> bytes:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    @staticmethod
    async def _answer(send: Any, status: int, body: bytes, headers: dict[str, str]) -> None:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    def _valid(self, bearer: str | None) -> bool:
        if not bearer or not bearer.startswith("Bearer "):
            return False
        token = bearer[7:]
        assert self.srv is not None
        return token not in self.revoked and self.srv.service.decode_access_token(token) is not None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        bearer = headers.get("authorization")
        with self.lock:
            self.requests.append((path, bearer))

        async def send_counting(message: Any) -> None:
            if message["type"] == "http.response.start":
                with self.lock:
                    self.statuses[(path, message["status"])] += 1
            await send(message)

        json_ct = {"content-type": "application/json"}
        if path.startswith("/t/"):
            body = await self._body(receive)
            if path == "/t/always401":
                await self._answer(send_counting, 401, b'{"error":"invalid_token"}', json_ct)
                return
            if path == "/t/once419":
                if not self.once419_done:
                    self.once419_done = True
                    await self._answer(send_counting, 419, b'{"error":"expired"}', json_ct)
                    return
                path = "/t/strict"
            if path == "/t/held":
                self.held_arrived.set()
                await asyncio.to_thread(self.release_held.wait, 30)
            ok = self._valid(bearer)
            status = 200 if ok else 401
            answer = json.dumps({"ok": ok, "body_len": len(body)}).encode()
            await self._answer(send_counting, status, answer, json_ct)
            return
        if path != "/oauth/token":
            await self.app(scope, receive, send_counting)
            return

        body = await self._body(receive)
        with self.lock:
            self.token_calls += 1
            canned = self.token_answers.pop(0) if self.token_answers else None
        if self.hold_token is not None:
            self.token_waiting.set()
            await asyncio.to_thread(self.hold_token.wait, 30)
        if canned is not None:
            status, extra, payload = canned
            await self._answer(send_counting, status, payload, extra)
            return
        if self.before_token is not None:
            form = dict(parse_qsl(body.decode()))
            await asyncio.to_thread(self.before_token, form)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        if not self.strip:
            await self.app(scope, replay, send_counting)
            return
        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                parts.append(message.get("body", b""))
                if not message.get("more_body"):
                    raw = b"".join(parts)
                    try:
                        data = json.loads(raw)
                        for field in self.strip:
                            data.pop(field, None)
                        raw = json.dumps(data).encode()
                    except ValueError:
                        pass
                    hdrs = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                    hdrs.append((b"content-length", str(len(raw)).encode()))
                    await send_counting({**start, "headers": hdrs})
                    await send({"type": "http.response.body", "body": raw})

        await self.app(scope, replay, capture)

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if p == path)


class Server:
    """A LiveServer plus its Faults middleware and a user 'alice'."""

    def __init__(self, srv: LiveServer, faults: Faults) -> None:
        self.srv = srv
        self.faults = faults
        self.url = srv.url
        self.token_url = srv.token_url
        self.me = srv.url + "/api/me"

    @property
    def refreshes(self) -> int:
        stats = self.srv.stats
        return int(stats["refresh_rotated"] + stats["refresh_grace"])

    def session(self, *, expired: bool = False, generation: int = 0) -> TokenSet:
        answer = self.srv.login("alice", "pw")
        tokens = TokenSet.from_answer(answer, generation=generation)
        if expired:
            tokens = replace(tokens, expires_at=time.time() - 1)
        return tokens

    def auth(self, store: Any = None, *, tokens: TokenSet | None = None, **kw: Any) -> TokenAuth:
        kw.setdefault("retry", FAST_RETRY)
        kw.setdefault("sleep", lambda s: None)
        refresher = kw.pop("refresher", None) or OAuth2Refresher(self.token_url)
        store = store if store is not None else MemoryStore()
        if tokens is not None:
            store.save(tokens)
        return TokenAuth(refresher, store, **kw)


class SyncHTTP:
    """The same calls through httpx2, httpx or requests."""

    def __init__(self, lib: str, auth: Any) -> None:
        self.lib = lib
        if lib == "requests":
            import requests

            self.client: Any = requests.Session()
            self.client.auth = auth
        else:
            module = __import__(lib)
            self.client = module.Client(auth=auth, timeout=30)

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        if self.lib == "requests" and "content" in kw:
            kw["data"] = kw.pop("content")
        return self.client.post(url, **kw)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> SyncHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def async_client(lib: str, auth: Any) -> Any:
    module = __import__(lib)
    return module.AsyncClient(auth=auth, timeout=module.Timeout(60, pool=None))
