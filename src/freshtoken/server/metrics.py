"""Prometheus metrics, one registry per app so several apps can live in one process."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.token_requests = Counter(
            "freshtoken_token_requests",
            "Token endpoint answers by grant type and outcome",
            ["grant_type", "outcome"],
            registry=self.registry,
        )
        self.reuse_detected = Counter(
            "freshtoken_refresh_reuse_detected",
            "Refresh-token reuse detections (each revoked a session)",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "freshtoken_rate_limited",
            "Requests refused by a rate limit",
            ["limit"],
            registry=self.registry,
        )
        self.db_unavailable = Counter(
            "freshtoken_database_unavailable",
            "Requests answered 503 because the database failed",
            registry=self.registry,
        )
        self.token_latency = Histogram(
            "freshtoken_token_request_seconds",
            "Time spent answering /oauth/token and /auth/*",
            ["grant_type"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )

        # Label children by label values: ``labels()`` validates and locks on every
        # call, a few µs of each token request; the children themselves never change.
        self._children: dict[tuple[str, ...], Any] = {}

    def count_token_request(self, grant_type: str, outcome: str) -> None:
        key = ("count", grant_type, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.token_requests.labels(grant_type, outcome)
        child.inc()

    def observe_token_latency(self, grant_type: str, seconds: float) -> None:
        key = ("latency", grant_type)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.token_latency.labels(grant_type)
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
