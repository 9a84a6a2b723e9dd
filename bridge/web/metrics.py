"""``GET /metrics``: the read side's facts in the Prometheus text format, for operators' dashboards.

Every value is read from the database at scrape time by a collector on a fresh registry:
the app runs in several gunicorn processes, so a counter kept in one process's memory
would tell a different story in each. Bearer ``server.admin_token`` or ``server.metrics_token``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from sqlite_utils import Database

from bridge.storage import history
from bridge.storage.health import health_snapshot
from bridge.storage.stores import BIGCOMMERCE, REFERSION
from bridge.web.auth import check_token
from bridge.web.database import get_db

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

# The classic text format, which every Prometheus server reads (the names here are plain ASCII).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_WINDOW_SECONDS = 7 * 86400.0
LATENCY_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 86400)
SERVICES = (BIGCOMMERCE, REFERSION)
QUEUES = ("events", "deliveries")


class BridgeCollector:
    """Metric families computed from the database when Prometheus scrapes."""

    def __init__(self, db: Database, stores: list[str], *, now: float):
        self._db = db
        self._stores = stores
        self._now = now

    def describe(self) -> list[Metric]:
        return []  # nothing is read at registration; ``collect`` reads at scrape time

    def collect(self) -> Iterator[Metric]:
        db, now = self._db, self._now
        # The stores served, and those only the data knows (a store removed since, or never served).
        stores = sorted({*self._stores, *history.store_hashes(db)})
        queues = history.queues_by_store(db, now=now)
        paused = {(row["store_hash"], row["service"]) for row in health_snapshot(db, now=now)["paused"]}
        latencies = history.delivery_latencies(db, since=now - LATENCY_WINDOW_SECONDS)

        orders = GaugeMetricFamily("bridge_orders", "Orders heard of, each under its current decision.", labels=["store", "decision"])
        skipped = GaugeMetricFamily(
            "bridge_orders_skipped", "Skipped orders by the reason they were not reported.", labels=["store", "reason"]
        )
        for store in stores:
            by_decision, by_reason = history.counts(db, stores=[store])
            for decision in history.DECISIONS:
                orders.add_metric([store, decision], by_decision[decision])
            for reason, count in by_reason.items():
                skipped.add_metric([store, reason], count)
        yield orders
        yield skipped

        depth = GaugeMetricFamily("bridge_queue_depth", "Events and deliveries waiting to be worked on.", labels=["store", "queue"])
        dead = GaugeMetricFamily(
            "bridge_dead_items", "Events and deliveries given up on: replay them once the cause is fixed.", labels=["store", "queue"]
        )
        oldest = GaugeMetricFamily(
            "bridge_oldest_pending_delivery_age_seconds",
            "Age of the oldest delivery still waiting to be sent (0 when none waits).",
            labels=["store"],
        )
        for store in stores:
            facts = queues.get(store, {})
            for queue in QUEUES:
                depth.add_metric([store, queue], facts.get(queue, 0))
                dead.add_metric([store, queue], facts.get(f"dead_{queue}", 0))
            oldest.add_metric([store], facts.get("oldest_pending_delivery_age_seconds") or 0.0)
        yield depth
        yield dead
        yield oldest

        paused_family = GaugeMetricFamily(
            "bridge_store_paused", "1 while the store's work for a service is paused by refused credentials.", labels=["store", "service"]
        )
        for store in stores:
            for service in SERVICES:
                paused_family.add_metric([store, service], 1 if (store, service) in paused else 0)
        yield paused_family

        latency = HistogramMetricFamily(
            "bridge_delivery_latency_seconds",
            "Seconds from queueing a delivery to Refersion taking it, over deliveries done in the last 7 days.",
            labels=["store"],
        )
        for store in stores:
            seconds = latencies.get(store, [])
            buckets = [(floatToGoString(bound), sum(1 for value in seconds if value <= bound)) for bound in LATENCY_BUCKETS]
            latency.add_metric([store], [*buckets, ("+Inf", len(seconds))], sum_value=sum(seconds))
        yield latency

        yield GaugeMetricFamily("bridge_up", "1 while the bridge answers and can read its database.", value=1)


def _error(message: str, status: int, **headers: str) -> tuple[Response, int]:
    response = jsonify(error=message)
    response.headers.update(headers)
    response.headers["Cache-Control"] = "no-store"
    return response, status


def _presented_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@bp.get("/metrics")
def metrics() -> tuple[Response, int]:
    settings = current_app.config["BRIDGE_SETTINGS"].server
    accepted = [token for token in (settings.admin_token, settings.metrics_token) if token]
    if not accepted:
        return _error("Metrics are off until server.metrics_token or server.admin_token is set.", 404)
    matched, wait = check_token(_presented_token(), accepted)
    if wait:
        return _error(f"Too many failed attempts from your address; retry in {wait} seconds.", 429, **{"Retry-After": str(wait)})
    if not matched:
        return _error("Send Authorization: Bearer <server.metrics_token or server.admin_token>.", 401, **{"WWW-Authenticate": "Bearer"})
    try:
        db = get_db()
        stores = [store.store_hash for store in current_app.config["BRIDGE_STORES"].all(db)]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(BridgeCollector(db, stores, now=time.time()))
        body = generate_latest(registry)
    except (sqlite3.Error, OSError):
        log.exception("Metrics could not read the database")
        return _error("The database cannot be read.", 503)
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}), 200
