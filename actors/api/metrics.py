"""Prometheus metrics, taken where each figure lives, with no hook in the runtime.

Two sources, one registry per app:

* what the API itself does, counted as it happens: every runtime request it sends
  (:class:`MeteredClient`: by target address and message type, errors by error type, a
  latency histogram) and every HTTP request it serves;
* what the system's owners report, read from the status report at scrape time
  (:class:`ReportCollector`): mailbox depth and restarts per actor (the broker's view of
  the nodes' heartbeats), flood waits by account and method and reconnects (each session
  actor), posts stored and the store's sequence (the store), channel lag, and the posts
  the API saw stored on the bus.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from actors.api.base import Requester
from actors.api.status import PostRate, StatusCache
from protocols.api import StatusReport
from protocols.base import Message, Request
from runtime.errors import RequestError

__all__ = ["METRICS", "MeteredClient", "Metrics"]

R = TypeVar("R", bound=Message)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Metrics:
    """The app's registry and the figures it counts as they happen."""

    def __init__(self, rate: PostRate) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "switchboard_requests",
            "Runtime requests sent by the API, by target address and message type",
            ["address", "type"],
            registry=self.registry,
        )
        self.errors = Counter(
            "switchboard_request_errors",
            "Runtime requests answered with an error, by error type",
            ["type"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "switchboard_request_seconds",
            "Round trip of runtime requests sent by the API, by message type",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http = Counter(
            "switchboard_http_requests",
            "HTTP requests served, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.report = ReportCollector(rate)
        self.registry.register(self.report)
        self._expose = make_aiohttp_handler(self.registry)

    async def expose(self, request: web.Request, cache: StatusCache) -> web.StreamResponse:
        """The ``/metrics`` reply: the reported figures refreshed, then everything."""
        self.report.latest = await cache.get()
        return await self._expose(request)


METRICS = web.AppKey("metrics", Metrics)


class MeteredClient:
    """A :class:`Requester` that counts what passes through it (same guarantees)."""

    def __init__(self, inner: Requester, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def request(
        self, target: str, body: Request[R], timeout: float = 10.0, idempotency_key: str = ""
    ) -> R:
        kind = type(body).__name__
        self.metrics.requests.labels(target, kind).inc()
        started = time.perf_counter()
        try:
            return await self.inner.request(target, body, timeout, idempotency_key)
        except RequestError as exc:
            self.metrics.errors.labels(type(exc.error).__name__).inc()
            raise
        finally:
            self.metrics.latency.labels(kind).observe(time.perf_counter() - started)


class ReportCollector(Collector):
    """Figures read from the latest status report (set before each scrape)."""

    def __init__(self, rate: PostRate) -> None:
        self.rate = rate
        self.latest: StatusReport | None = None

    def collect(self) -> Iterator[Metric]:
        report = self.latest
        seen = CounterMetricFamily(
            "switchboard_posts_seen", "Stored posts the API saw announced on the bus"
        )
        seen.add_metric([], self.rate.total)
        yield seen
        if report is None:
            return
        yield from _actor_metrics(report)
        yield from _account_metrics(report)
        yield from _store_metrics(report)


def _actor_metrics(report: StatusReport) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "switchboard_mailbox_depth", "Messages waiting in an actor's mailbox", labels=["address"]
    )
    restarts = CounterMetricFamily(
        "switchboard_actor_restarts", "Restarts of an actor by its supervisor", labels=["address"]
    )
    for actor in report.actors:
        depth.add_metric([actor.address], actor.mailbox)
        restarts.add_metric([actor.address], actor.restarts)
    failed = GaugeMetricFamily("switchboard_failed_actors", "Actors failed past their restarts")
    failed.add_metric([], len(report.failed))
    yield from (depth, restarts, failed)


def _account_metrics(report: StatusReport) -> Iterator[Metric]:
    flood = GaugeMetricFamily(
        "switchboard_flood_wait_seconds",
        "Seconds left of a FloodWait, by account and Telegram method",
        labels=["account", "method"],
    )
    reconnects = CounterMetricFamily(
        "switchboard_reconnects", "Reconnects of an account's connection", labels=["account"]
    )
    authorized = GaugeMetricFamily(
        "switchboard_account_authorized", "1 if the account is logged in", labels=["account"]
    )
    for account in report.accounts:
        for method, seconds in account.flood_waits.items():
            flood.add_metric([account.account, method], seconds)
        reconnects.add_metric([account.account], account.reconnects)
        authorized.add_metric([account.account], int(account.authorized))
    yield from (flood, reconnects, authorized)


def _store_metrics(report: StatusReport) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "switchboard_channel_lag_seconds",
        "How far behind a channel's newest post the store was at its last check",
        labels=["channel"],
    )
    for channel in report.channels:
        lag.add_metric([str(channel.id)], channel.lag_s)
    yield lag
    if report.store is None:
        return
    deliveries = GaugeMetricFamily(
        "switchboard_deliveries",
        "Deliveries to subscribers in a state (the delivery queue; counted up to 1000)",
        labels=["status"],
    )
    deliveries.add_metric(["pending"], report.deliveries_pending)
    deliveries.add_metric(["failed"], report.deliveries_failed)
    yield deliveries
    posts = CounterMetricFamily("switchboard_posts_stored", "Posts in the store")
    posts.add_metric([], report.store.posts)
    seq = GaugeMetricFamily("switchboard_store_last_seq", "The store's newest sequence number")
    seq.add_metric([], report.store.last_seq)
    yield from (posts, seq)
