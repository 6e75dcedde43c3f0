"""Rate limits on login (per username, per IP) and refresh (per session, per IP):
429 + Retry-After; memory by default, Redis shared between servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from freshtoken.server.ratelimit import RateLimiter
from freshtoken.server.settings import Settings
from freshtoken.testing import FakeClock, LiveServer

from .helpers import FAST_PASSWORDS, PASSWORD, USERNAME, assert_oauth_error, password_grant

LOOSE = "1000/minute"


def limited(**limits: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        **FAST_PASSWORDS,
        "ratelimit_enabled": True,
        "ratelimit_login_per_username": LOOSE,
        "ratelimit_login_per_ip": LOOSE,
        "ratelimit_refresh_per_session": LOOSE,
        "ratelimit_refresh_per_ip": LOOSE,
    }
    values.update({f"ratelimit_{k}": v for k, v in limits.items()})
    return values


def assert_429(response: httpx.Response, limit: str) -> None:
    body = assert_oauth_error(response, 429, "rate_limited")
    assert limit in body["error_description"]
    assert 1 <= int(response.headers["retry-after"]) <= 60


@pytest.fixture
def make_server(clock: FakeClock) -> Iterator[Any]:
    servers: list[LiveServer] = []
    clients: list[httpx.Client] = []

    def make(**settings: Any) -> tuple[LiveServer, httpx.Client]:
        srv = LiveServer(clock=clock, settings=settings).start()
        servers.append(srv)
        srv.create_user(USERNAME, PASSWORD)
        clients.append(httpx.Client(base_url=srv.url, timeout=30))
        return srv, clients[-1]

    yield make
    for client in clients:
        client.close()
    for srv in servers:
        srv.stop()


def test_login_per_username(make_server: Any) -> None:
    srv, http = make_server(**limited(login_per_username="3/minute"))
    srv.create_user("bob", PASSWORD)
    assert password_grant(http).status_code == 200
    assert password_grant(http, password="wrong").status_code == 400  # failures count too
    assert (
        http.post("/auth/login", json={"username": USERNAME, "password": PASSWORD}).status_code
        == 200
    )
    assert_429(password_grant(http), "login per username")
    assert_429(
        http.post("/auth/login", json={"username": USERNAME, "password": PASSWORD}),
        "login per username",
    )
    assert password_grant(http, username="bob").status_code == 200  # other users unaffected
    metrics = http.get("/metrics").text
    assert 'freshtoken_rate_limited_total{limit="login per username"} 2.0' in metrics


def test_login_per_ip(make_server: Any) -> None:
    _, http = make_server(**limited(login_per_ip="2/minute"))
    assert password_grant(http, username="u1").status_code == 400
    assert password_grant(http, username="u2").status_code == 400
    assert_429(password_grant(http, username="u3"), "login per IP")
    assert_429(password_grant(http), "login per IP")  # even with the right password


def test_refresh_per_session(make_server: Any) -> None:
    srv, http = make_server(**limited(refresh_per_session="2/minute"))
    token = srv.login(USERNAME, PASSWORD)["refresh_token"]
    for _ in range(2):
        answer = http.post("/auth/refresh", json={"refresh_token": token})
        assert answer.status_code == 200
        token = answer.json()["refresh_token"]
    assert_429(http.post("/auth/refresh", json={"refresh_token": token}), "refresh per session")
    # The refused request did not spend the token, and other sessions are unaffected.
    other = srv.login(USERNAME, PASSWORD)["refresh_token"]
    assert http.post("/auth/refresh", json={"refresh_token": other}).status_code == 200
    assert srv.stats["refresh_reuse"] == 0


def test_refresh_per_ip(make_server: Any) -> None:
    srv, http = make_server(**limited(refresh_per_ip="3/minute"))
    tokens = [srv.login(USERNAME, PASSWORD)["refresh_token"] for _ in range(4)]
    for token in tokens[:3]:
        response = http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": token, "client_id": "default"},
        )
        assert response.status_code == 200
    response = http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens[3], "client_id": "default"},
    )
    assert_429(response, "refresh per IP")


def test_switch_turns_them_off(make_server: Any) -> None:
    settings = limited(login_per_username="1/minute")
    settings["ratelimit_enabled"] = False
    _, http = make_server(**settings)
    assert all(password_grant(http).status_code == 200 for _ in range(4))


def test_redis_counts_are_shared_between_servers(make_server: Any, redis_url: str) -> None:
    settings = limited(login_per_username="4/minute", storage_url=redis_url)
    one, http_one = make_server(**settings)
    two, http_two = make_server(**settings)
    assert password_grant(http_one).status_code == 200
    assert password_grant(http_two).status_code == 200
    assert password_grant(http_one).status_code == 200
    assert password_grant(http_two).status_code == 200
    assert_429(password_grant(http_one), "login per username")
    assert_429(password_grant(http_two), "login per username")
    import redis

    keys = redis.Redis.from_url(redis_url).keys("freshtoken*")
    assert keys  # the counters really live in Redis
    assert not one.app.state.ctx.limiter.degraded and not two.app.state.ctx.limiter.degraded


def test_memory_counts_are_per_process(make_server: Any) -> None:
    settings = limited(login_per_username="1/minute")
    _, http_one = make_server(**settings)
    _, http_two = make_server(**settings)
    assert password_grant(http_one).status_code == 200
    assert password_grant(http_two).status_code == 200
    assert_429(password_grant(http_one), "login per username")


def test_unreachable_redis_falls_back_to_memory(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        _env_file=None,
        ratelimit_storage_url="redis://127.0.0.1:1/0",
        ratelimit_login_per_username="2/minute",
    )
    limiter = RateLimiter(settings)
    with caplog.at_level("WARNING", logger="freshtoken.server.ratelimit"):
        assert limiter.hit("login_username", "alice") is None
        assert limiter.hit("login_username", "alice") is None
        retry_after = limiter.hit("login_username", "alice")
    assert retry_after is not None and retry_after >= 1
    assert limiter.degraded
    assert any("falling back" in r.getMessage() for r in caplog.records)


def test_bad_limit_setting_is_a_configuration_error() -> None:
    from freshtoken.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        RateLimiter(Settings(_env_file=None, ratelimit_login_per_ip="lots"))


def test_documented_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).ratelimit_enabled is True  # on by default
    monkeypatch.setenv("FRESHTOKEN_RATELIMIT_ENABLED", "false")
    settings = Settings(_env_file=None)
    assert settings.ratelimit_enabled is False
    limiter = RateLimiter(settings)
    assert all(limiter.hit("login_username", "alice") is None for _ in range(50))
