"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, a real
freshtoken server per test on a loopback port, and a tiny second web server that
plays "another origin" (an allowed app, or an attacker's page).

Chromium is /usr/bin/chromium (or $FRESHTOKEN_CHROMIUM). Without it the tests
skip with a reason; under CI=true they fail instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from freshtoken.testing import LiveServer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STATIC = REPO / "src" / "freshtoken" / "web" / "static"
AXIOS = HERE / "node_modules" / "axios" / "dist" / "axios.min.js"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("FRESHTOKEN_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Short access tokens so that "wait past the token's lifetime" takes seconds.
ACCESS_TTL = 2


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_instance: Any) -> Iterator[Any]:
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (cookies, storage) per test."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# --- servers -------------------------------------------------------------------------------


@pytest.fixture
def make_server() -> Iterator[Callable[..., LiveServer]]:
    """``make_server(app_wrapper=None, **settings)`` → a started LiveServer (demo mode,
    ``ACCESS_TTL``-second access tokens, verifier leeway 0), stopped after the test."""
    with ExitStack() as stack:

        def make(app_wrapper: Any = None, **settings: Any) -> LiveServer:
            values: dict[str, Any] = {
                "demo_mode": True,
                "access_token_ttl": ACCESS_TTL,
                "leeway": 0,
            }
            values.update(settings)
            return stack.enter_context(LiveServer(settings=values, app_wrapper=app_wrapper))

        yield make


class RefreshDelay:
    """An ``app_wrapper`` that holds every ``POST /auth/refresh`` for ``seconds`` (changeable
    while the server runs), so a test can act while a refresh is surely in flight."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds

    def __call__(self, app: Any) -> Any:
        async def delayed(scope: Any, receive: Any, send: Any) -> None:
            if (
                self.seconds > 0
                and scope["type"] == "http"
                and scope["method"] == "POST"
                and scope["path"] == "/auth/refresh"
            ):
                await asyncio.sleep(self.seconds)
            await app(scope, receive, send)

        return delayed


@pytest.fixture
def refresh_delay() -> RefreshDelay:
    return RefreshDelay()


class Faults:
    """An ``app_wrapper`` for the client tests: answer the next ``refresh_failures``
    refreshes with 503, and ``GET /api/always-401`` with a 401 whatever the token.
    Its own answers carry the CORS headers the real app would add for ``origin``."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.refresh_failures = 0
        self.refresh_attempts = 0

    def __call__(self, app: Any) -> Any:
        async def faulty(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["method"] != "OPTIONS":
                if scope["path"] == "/auth/refresh":
                    self.refresh_attempts += 1
                    if self.refresh_failures > 0:
                        self.refresh_failures -= 1
                        await self._answer(send, 503, {"Retry-After": "0"}, b"{}")
                        return
                if scope["path"] == "/api/always-401":
                    challenge = 'Bearer error="invalid_token", error_description="always refused"'
                    await self._answer(send, 401, {"WWW-Authenticate": challenge}, b"")
                    return
            await app(scope, receive, send)

        return faulty

    async def _answer(self, send: Any, status: int, headers: dict[str, str], body: bytes) -> None:
        all_headers = {
            **headers,
            "Content-Type": "application/json",
            "Access-Control-Allow-Origin": self.origin,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Expose-Headers": "WWW-Authenticate",
        }
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


class StaticSite:
    """A tiny web server on its own loopback port: another origin than the LiveServer."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.close()
        self.origin = f"http://127.0.0.1:{self.port}"
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path not in site.files:
                    self.send_error(404)
                    return
                body, ctype = site.files[path]
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, body: bytes | str, ctype: str) -> None:
        self.files[path] = (body.encode() if isinstance(body, str) else body, ctype)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def other_origin() -> Iterator[StaticSite]:
    """A second origin serving the test app (freshtoken.js, axios, pages/app.*)."""
    site = StaticSite()
    site.add("/freshtoken.js", (STATIC / "freshtoken.js").read_bytes(), "text/javascript")
    site.add("/app.js", (HERE / "pages" / "app.js").read_bytes(), "text/javascript")
    site.add("/app.html", (HERE / "pages" / "app.html").read_bytes(), "text/html")
    site.add("/blank.html", "<!doctype html><title>another site</title><p>hi</p>", "text/html")
    if AXIOS.exists():
        site.add("/axios.min.js", AXIOS.read_bytes(), "text/javascript")
    yield site
    site.close()


class App:
    """The test app (pages/app.*) on ``other_origin``, talking to a LiveServer that allows
    that origin (CORS with credentials)."""

    def __init__(self, srv: LiveServer, site: StaticSite, context: Any, faults: Faults) -> None:
        self.srv = srv
        self.site = site
        self.context = context
        self.faults = faults
        self.net = Network(context)

    def open(self, proactive: bool = True) -> Any:
        page = self.context.new_page()
        query = f"?api={self.srv.url}" + ("" if proactive else "&proactive=0")
        page.goto(self.site.origin + "/app.html" + query)
        page.wait_for_function("() => document.body.dataset.ready === 'yes'", polling=50)
        return page

    def login(self, page: Any) -> None:
        page.evaluate("client.login('demo', 'demo')")

    @staticmethod
    def wait_token_expired(page: Any) -> None:
        page.wait_for_function("() => client.expiresAt + 50 < Date.now()", polling=50)

    @staticmethod
    def events(page: Any, type_: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = page.evaluate(
            "JSON.parse(JSON.stringify(window.__freshtoken_events))"
        )
        return [e for e in events if e["type"] == type_]


@pytest.fixture
def app(make_server: Callable[..., LiveServer], other_origin: StaticSite, context: Any) -> App:
    faults = Faults(other_origin.origin)
    srv = make_server(app_wrapper=faults, cors_origins=[other_origin.origin])
    return App(srv, other_origin, context, faults)


@pytest.fixture(scope="session")
def axios_available() -> None:
    """axios comes from the npm registry, pinned by package-lock.json: installed here
    on first use, so the README's one test command is enough."""
    if not AXIOS.exists() and shutil.which("npm"):
        import subprocess

        subprocess.run(
            ["npm", "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--loglevel=error"],
            check=False,
            timeout=300,
        )
    if not AXIOS.exists():
        _unavailable("axios is not installed: run `npm ci --prefix tests/browser`")


# --- driving pages --------------------------------------------------------------------------


class Network:
    """Every request the context's pages make (all tabs), as (method, path) pairs."""

    def __init__(self, context: Any) -> None:
        self.requests: list[tuple[str, str]] = []
        context.on("request", self._on_request)

    def _on_request(self, request: Any) -> None:
        self.requests.append((request.method, urlsplit(request.url).path))

    def count(self, path: str, method: str = "POST") -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)

    def refreshes(self) -> int:
        return self.count("/auth/refresh")


class Demo:
    """Drives the demo page (/demo) of one LiveServer in one browser context."""

    def __init__(self, srv: LiveServer, context: Any) -> None:
        self.srv = srv
        self.context = context
        self.net = Network(context)
        self.problems: list[str] = []

    def open(self, page: Any = None) -> Any:
        page = page or self.context.new_page()
        self.watch(page)
        page.goto(self.srv.url + "/demo")
        self.wait_ready(page)
        return page

    def watch(self, page: Any) -> None:
        """Collect uncaught page errors and CSP violations into ``self.problems``."""
        page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.problems.append(f"console: {msg.text}")
                if "Content Security Policy" in msg.text or "Refused to" in msg.text
                else None
            ),
        )

    @staticmethod
    def wait_ready(page: Any) -> None:
        page.wait_for_function(
            "() => (window.__freshtoken_events || []).some(e => e.type === 'demo:ready')",
            polling=50,
        )

    @staticmethod
    def state(page: Any) -> str:
        return str(page.evaluate("document.body.dataset.state"))

    def login(self, page: Any, username: str = "demo", password: str = "demo") -> Any:
        page.fill("#username", username)
        page.fill("#password", password)
        with page.expect_response(lambda r: urlsplit(r.url).path == "/auth/login") as info:
            page.click("#login-button")
        page.wait_for_function("() => document.body.dataset.state === 'signed-in'", polling=50)
        return info.value

    @staticmethod
    def events(page: Any, type_: str | None = None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = page.evaluate(
            "JSON.parse(JSON.stringify(window.__freshtoken_events))"
        )
        return [e for e in events if type_ is None or e["type"] == type_]

    @staticmethod
    def wait_token_expired(page: Any) -> None:
        page.wait_for_function(
            "() => window.freshtokenDemo.client.expiresAt + 50 < Date.now()", polling=50
        )

    def api_results(self, page: Any) -> list[dict[str, Any]]:
        return self.events(page, "demo:api-result")

    def wait_api_results(self, page: Any, count: int) -> list[dict[str, Any]]:
        page.wait_for_function(
            f"() => window.__freshtoken_events.filter(e => e.type === 'demo:api-result').length"
            f" >= {count}",
            polling=50,
        )
        return self.api_results(page)

    def claims(self, page: Any) -> dict[str, Any]:
        return dict(page.evaluate("window.freshtokenDemo.client.claims"))


@pytest.fixture
def make_demo(context: Any) -> Callable[[LiveServer], Demo]:
    """``make_demo(srv)`` → a :class:`Demo` driver for that server in this test's context."""
    return lambda srv: Demo(srv, context)


@pytest.fixture
def demo(make_server: Callable[..., LiveServer], context: Any) -> Demo:
    return Demo(make_server(), context)


@pytest.fixture
def access_ttl() -> int:
    return ACCESS_TTL


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
