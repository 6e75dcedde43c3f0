"""HTTP plumbing shared by the routes: bounded body reading, strict form and JSON
parsing, client authentication headers, and the one error shape.

Hand-written rather than Starlette's ``request.form()``: the token endpoint is
the hot path, python-multipart costs more than the whole urlencoded parse, and
we need stricter rules than it offers (duplicate parameters are an error,
RFC 6749 §3.1; non-UTF-8 is a 400).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from freshtoken.server.exceptions import OAuthError, invalid_request
from freshtoken.server.service import RateLimited

log = logging.getLogger("freshtoken.server")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FIELDS = 32
# A body that has not fully arrived this long after the handler asked for it is
# answered 408: a slow client holds a connection, never a worker, for at most this.
BODY_TIMEOUT = 10.0


class RequestTooLarge(OAuthError):
    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__("invalid_request", f"request body is larger than {limit} bytes")


class BodyTimeout(OAuthError):
    status_code = 408

    def __init__(self) -> None:
        super().__init__("invalid_request", "the request body was not received in time")


class UnsupportedMediaType(OAuthError):
    status_code = 415

    def __init__(self, expected: str) -> None:
        super().__init__("invalid_request", f"Content-Type must be {expected}")


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(body, status_code=status_code, headers={**NO_STORE, **(headers or {})})


def error_response(exc: OAuthError, headers: dict[str, str] | None = None) -> Response:
    return json_response(
        {"error": exc.error, "error_description": exc.description}, exc.status_code, headers
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes, within BODY_TIMEOUT.

    The deadline is one loop timer that cancels this task, rather than
    ``asyncio.timeout``: same semantics (our cancellation becomes a 408, anyone
    else's propagates), a third of the cost on the refresh hot path."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise invalid_request("bad Content-Length")
        if int(declared) > limit:
            raise RequestTooLarge(limit)
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(BODY_TIMEOUT, expire)
    try:
        return await _receive_body(request, limit)
    except asyncio.CancelledError:
        # The timer fires only while this task waits inside the try, so our
        # cancellation always arrives here; a cancel of someone else's remains.
        if expired and task.uncancel() == 0:
            raise BodyTimeout() from None
        raise
    finally:
        timer.cancel()


async def _receive_body(request: Request, limit: int) -> bytes:
    """Starlette's ``request.stream()`` without the async generator."""
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


def parse_form_pairs(body: bytes) -> list[tuple[str, str]]:
    """``parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FIELDS)``, strict UTF-8.

    A refresh request (``grant_type=refresh_token&refresh_token=ftr_…``) has nothing
    to unquote: for such bodies a plain split gives the same pairs in a third of
    parse_qsl's time (a test checks the two agree on arbitrary input)."""
    if b"%" in body or b"+" in body or not body.isascii():
        return parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    text = body.decode("ascii")
    if text.count("&") >= MAX_FIELDS:
        raise ValueError("Max number of fields exceeded")
    pairs = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((name, value))
    return pairs


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict; repeats are refused."""
    if _media_type(request) != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("application/x-www-form-urlencoded")
    body = await read_body(request, limit)
    try:
        pairs = parse_form_pairs(body)
    except UnicodeDecodeError:
        raise invalid_request("the form body is not valid UTF-8") from None
    except ValueError:
        raise invalid_request(f"too many form fields (at most {MAX_FIELDS})") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise invalid_request(f"parameter {key!r} is repeated")
        if "\x00" in value:
            raise invalid_request(f"parameter {key!r} contains a NUL character")
        form[key] = value
    return form


class DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects with a repeated key are refused, like repeated form parameters:
    parsers disagree on which copy wins."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(key)
        obj[key] = value
    return obj


async def read_json_object(
    request: Request, limit: int, *, allow_empty: bool = False
) -> dict[str, Any]:
    body = await read_body(request, limit)
    if not body.strip() and allow_empty:
        return {}
    if _media_type(request) != "application/json":
        raise UnsupportedMediaType("application/json")
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except DuplicateKey as exc:
        raise invalid_request(f"parameter {exc.key[:64]!r} is repeated") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: a deeply nested body ("[[[[…") must be a 400, not a 500.
        raise invalid_request("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid_request("the JSON body must be an object")
    return data


def string_field(
    data: dict[str, Any], name: str, *, required: bool = True, max_len: int = 4096
) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise invalid_request(f"missing parameter: {name}")
        return None
    if not isinstance(value, str):
        raise invalid_request(f"parameter {name!r} must be a string")
    if required and value == "":
        raise invalid_request(f"missing parameter: {name}")
    if len(value) > max_len:
        raise invalid_request(f"parameter {name!r} is too long")
    if "\x00" in value:
        raise invalid_request(f"parameter {name!r} contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape
            raise invalid_request(f"parameter {name!r} is not valid Unicode") from None
    return value


def client_credentials(
    request: Request, form: dict[str, str]
) -> tuple[str | None, str | None, bool]:
    """(client_id, client_secret, used_basic) from HTTP Basic or the form (RFC 6749 §2.3.1)."""
    header = request.headers.get("authorization")
    if header and header[:6].lower() == "basic ":
        if "client_secret" in form:
            raise invalid_request("use one client authentication method, not two")
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
        raw_id, sep, raw_secret = decoded.partition(":")
        client_id, secret = unquote(raw_id), unquote(raw_secret)
        # NUL never reaches the database (PostgreSQL refuses it in text: a 500).
        if not sep or "\x00" in client_id or "\x00" in secret:
            raise OAuthError("invalid_client", "malformed Basic credentials", 401)
        form_id = form.get("client_id")
        if form_id is not None and form_id != client_id:
            raise invalid_request("client_id in the form differs from the Basic credentials")
        return client_id, secret, True
    return form.get("client_id") or None, form.get("client_secret") or None, False


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


Handler = Callable[[Request], Awaitable[Response]]


class GuardedEndpoint:
    """A route handler served as a plain ASGI app, with the error mapping of
    :meth:`respond`.

    Plain ASGI rather than a function endpoint: Starlette wraps those in
    ``request_response``, whose exception-handler lookup serves HTTPException
    (which these handlers never raise) and costs two closures per request on the
    token endpoint's hot path."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.__name__ = handler.__name__
        self.__doc__ = handler.__doc__

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(Request(scope, receive))
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        """The documented answers for every error a route can meet — never a 500
        for bad input, 503 + Retry-After when the database fails."""
        try:
            return await self.handler(request)
        except OAuthError as exc:
            headers = None
            if (
                exc.status_code == 401
                and request.headers.get("authorization", "")[:6].lower() == "basic "
            ):
                headers = {"WWW-Authenticate": 'Basic realm="freshtoken"'}
            if exc.status_code in (408, 413):
                # The rest of the body is still on the wire: do not keep reading it.
                headers = {"Connection": "close"}
            return error_response(exc, headers)
        except RateLimited as exc:
            metrics = getattr(request.app.state, "metrics", None)
            if metrics is not None:
                metrics.rate_limited.labels(exc.limit).inc()
            return json_response(
                {"error": "rate_limited", "error_description": f"too many requests ({exc.limit})"},
                429,
                {"Retry-After": str(exc.retry_after)},
            )
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            log.error("database unavailable: %s", type(exc).__name__)
            metrics = getattr(request.app.state, "metrics", None)
            if metrics is not None:
                metrics.db_unavailable.inc()
            return json_response(
                {
                    "error": "temporarily_unavailable",
                    "error_description": "the database is unavailable",
                },
                503,
                {"Retry-After": "5"},
            )


def guarded(handler: Handler) -> GuardedEndpoint:
    return GuardedEndpoint(handler)
