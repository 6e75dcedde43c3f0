"""Operations: liveness, readiness, and the database going away (503 + Retry-After)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from freshtoken.testing import FakeClock, LiveServer

from .helpers import FAST_PASSWORDS, PASSWORD, USERNAME, assert_oauth_error, password_grant

ADMIN = "host={host} port={port} user={user} dbname=postgres"


class Outage:
    """Cut one PostgreSQL database off: kill its connections, refuse new ones."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.name = parsed.database
        self.conninfo = ADMIN.format(host=parsed.host, port=parsed.port, user=parsed.username)

    def _run(self, *statements: str) -> None:
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]

    def start(self) -> None:
        self._run(
            f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false',
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()",
        )

    def end(self) -> None:
        self._run(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
def pg_server(postgres_url: str, clock: FakeClock) -> Iterator[tuple[LiveServer, Outage]]:
    outage = Outage(postgres_url)
    with LiveServer(clock=clock, database_url=postgres_url, settings=dict(FAST_PASSWORDS)) as srv:
        srv.create_user(USERNAME, PASSWORD)
        try:
            yield srv, outage
        finally:
            outage.end()


def assert_503(response: httpx.Response) -> None:
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert int(response.headers["retry-after"]) > 0


def test_database_outage_answers_503_and_recovers(pg_server: tuple[LiveServer, Outage]) -> None:
    srv, outage = pg_server
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        login = password_grant(http).json()
        assert http.get("/readyz").status_code == 200

        outage.start()
        try:
            assert_503(
                http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": login["refresh_token"],
                        "client_id": "default",
                    },
                )
            )
            assert_503(password_grant(http))
            assert_503(http.post("/auth/refresh", json={"refresh_token": login["refresh_token"]}))
            assert_503(http.post("/oauth/revoke", data={"token": "x", "client_id": "default"}))
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert int(ready.headers["retry-after"]) > 0
            assert http.get("/healthz").status_code == 200  # alive, just not ready
            # Verifying access tokens needs no database.
            me = http.get("/api/me", headers={"Authorization": f"Bearer {login['access_token']}"})
            assert me.status_code == 200
            metrics = http.get("/metrics").text
            assert "freshtoken_database_unavailable_total 4.0" in metrics
        finally:
            outage.end()

        # No token was issued during the outage: the original is still the live one.
        assert http.get("/readyz").status_code == 200
        rotated = http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": login["refresh_token"],
                "client_id": "default",
            },
        )
        assert rotated.status_code == 200
        assert srv.stats["refresh_rotated"] == 1


def test_healthz_never_touches_the_database(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_server_freezes_its_startup_objects_unless_told_not_to() -> None:
    """FRESHTOKEN_GC_FREEZE (default true): startup objects leave the cyclic collector's
    reach once the app has started; LiveServer turns it off for test processes."""
    import gc

    gc.unfreeze()
    try:
        with LiveServer():
            assert gc.get_freeze_count() == 0
        with LiveServer(settings={"gc_freeze": True}) as srv:
            assert gc.get_freeze_count() > 10_000
            assert httpx.get(srv.url + "/healthz").status_code == 200
    finally:
        gc.unfreeze()
