"""GET /metrics over a database filled by the real pipeline: webhooks through the Flask intake,
the worker against the fake BigCommerce and Refersion, then a scrape parsed as Prometheus does."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.web.app import create_app
from tests.conftest import STORE_HASH, post_webhook, status_updated
from tests.fakes import load_fixture

SESSION_SECRET = "ses-4d2b9e7f1c6a3e8d5b0f7c2a9e4d"
ADMIN_TOKEN = "adm-Qm7vT2xLk9RwZp4Hs8Nd3Jc6Gb1Yf5Ue"
METRICS_TOKEN = "mtr-Xb4Kq8Wn2Lc7Vt1Rz9Ph5Jd3Fs6Gm0Ya"


@pytest.fixture
def metrics_client(make_settings):
    app = create_app(
        make_settings(server_admin_token=ADMIN_TOKEN, server_metrics_token=METRICS_TOKEN, server_session_secret=SESSION_SECRET)
    )
    app.config["TESTING"] = True
    return app.test_client()


def scrape(client, token: str = METRICS_TOKEN) -> dict[str, dict[tuple, float]]:
    """``{family: {((label, value), ...) + (sample suffix,): value}}`` of one scrape."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            key = (sample.name.removeprefix(family.name), *sorted(sample.labels.items()))
            found.setdefault(family.name, {})[key] = sample.value
    return found


def value(metrics: dict, family: str, suffix: str = "", **labels: str) -> float:
    return metrics[family][(suffix, *sorted(labels.items()))]


@pytest.fixture
def pipeline(client, worker, clock, bigcommerce, refersion):
    """Orders that end reported (one after a 503 and a wait), skipped, waiting, retrying and dead,
    and one for a store the bridge does not serve."""
    ids = {
        "reported": bigcommerce.add(load_fixture("manual_discount")),
        "free": bigcommerce.add(load_fixture("odd_cents"), total_inc_tax="0.0000"),
        "pending": bigcommerce.add(load_fixture("guest_without_name"), status_id=1, payment_status="pending"),
        "late": bigcommerce.add(load_fixture("manual_discount"), id=120),
        "retrying": bigcommerce.add(load_fixture("multi_currency")),
        "dead": bigcommerce.add(load_fixture("ipv6_only_customer")),
    }
    for name in ("reported", "free", "pending"):
        post_webhook(client, status_updated(ids[name], 11))
        worker.run_until_idle()
    refersion.answer_next(503)
    post_webhook(client, status_updated(ids["late"], 11))
    worker.run_until_idle()
    clock.advance(45 * 60)  # past the first retry: taken 45 minutes after it was queued
    worker.run_until_idle()
    refersion.answer_next(503)
    post_webhook(client, status_updated(ids["retrying"], 11))
    worker.run_until_idle()
    refersion.answer_next(400, body='{"error": "Missing required field: items"}')
    post_webhook(client, status_updated(ids["dead"], 11))
    worker.run_until_idle()
    post_webhook(client, status_updated(999_001, 11, store_hash="otherstore"))
    worker.run_until_idle()
    return ids


def test_a_scrape_tells_the_pipelines_facts_per_store(metrics_client, client, pipeline, db):
    metrics = scrape(metrics_client)

    orders = {dict(key[1:])["decision"]: count for key, count in metrics["bridge_orders"].items() if ("store", STORE_HASH) in key}
    assert orders == {"reported": 2, "skipped": 1, "waiting": 1, "retrying": 1, "dead": 1, "paused": 0, "dry_run": 0}
    assert value(metrics, "bridge_orders", store="otherstore", decision="skipped") == 1
    assert metrics["bridge_orders_skipped"] == {
        ("", ("reason", "free_order"), ("store", STORE_HASH)): 1,
        ("", ("reason", "unknown_store"), ("store", "otherstore")): 1,
    }

    assert value(metrics, "bridge_queue_depth", store=STORE_HASH, queue="deliveries") == 1  # the one retrying
    assert value(metrics, "bridge_queue_depth", store=STORE_HASH, queue="events") == 0
    assert value(metrics, "bridge_dead_items", store=STORE_HASH, queue="deliveries") == 1
    assert value(metrics, "bridge_dead_items", store=STORE_HASH, queue="events") == 0
    assert 0 <= value(metrics, "bridge_oldest_pending_delivery_age_seconds", store=STORE_HASH) < 3600
    assert value(metrics, "bridge_oldest_pending_delivery_age_seconds", store="otherstore") == 0
    assert value(metrics, "bridge_store_paused", store=STORE_HASH, service="refersion") == 0
    assert value(metrics, "bridge_store_paused", store=STORE_HASH, service="bigcommerce") == 0
    assert value(metrics, "bridge_up") == 1

    # Summed over the stores, the queues are /healthz's figures.
    health = client.get("/healthz").get_json()
    for queue in ("events", "deliveries"):
        assert sum(v for k, v in metrics["bridge_queue_depth"].items() if ("queue", queue) in k) == health["queue_depth"][queue]
        assert sum(v for k, v in metrics["bridge_dead_items"].items() if ("queue", queue) in k) == health["dead"][queue]

    # Two deliveries done: one at once, one 45 minutes after it was queued.
    done = db.execute("SELECT done_at - created_at FROM deliveries WHERE state = 'done' ORDER BY done_at").fetchall()
    assert len(done) == 2 and done[1][0] == pytest.approx(45 * 60, abs=5)
    assert value(metrics, "bridge_delivery_latency_seconds", "_count", store=STORE_HASH) == 2
    assert value(metrics, "bridge_delivery_latency_seconds", "_sum", store=STORE_HASH) == pytest.approx(sum(row[0] for row in done))
    assert value(metrics, "bridge_delivery_latency_seconds", "_bucket", store=STORE_HASH, le="60.0") == 1
    assert value(metrics, "bridge_delivery_latency_seconds", "_bucket", store=STORE_HASH, le="1800.0") == 1
    assert value(metrics, "bridge_delivery_latency_seconds", "_bucket", store=STORE_HASH, le="3600.0") == 2
    assert value(metrics, "bridge_delivery_latency_seconds", "_bucket", store=STORE_HASH, le="+Inf") == 2
    assert value(metrics, "bridge_delivery_latency_seconds", "_count", store="otherstore") == 0


def test_a_store_served_but_not_yet_heard_from_shows_zeros(metrics_client):
    metrics = scrape(metrics_client)
    assert value(metrics, "bridge_orders", store=STORE_HASH, decision="reported") == 0
    assert value(metrics, "bridge_queue_depth", store=STORE_HASH, queue="deliveries") == 0
    assert value(metrics, "bridge_delivery_latency_seconds", "_count", store=STORE_HASH) == 0
    assert "bridge_orders_skipped" not in metrics or not metrics["bridge_orders_skipped"]
    assert value(metrics, "bridge_up") == 1


def test_a_store_whose_keys_were_refused_shows_paused(metrics_client, client, make_worker, bigcommerce, refersion):
    refersion.secret_key = "sec_rotated_in_refersion"
    post_webhook(client, status_updated(bigcommerce.add(load_fixture("manual_discount")), 11))
    make_worker().run_until_idle()
    metrics = scrape(metrics_client, ADMIN_TOKEN)
    assert value(metrics, "bridge_store_paused", store=STORE_HASH, service="refersion") == 1
    assert value(metrics, "bridge_store_paused", store=STORE_HASH, service="bigcommerce") == 0
    assert value(metrics, "bridge_orders", store=STORE_HASH, decision="paused") == 1


def test_the_response_is_prometheus_text_never_cached(metrics_client):
    response = metrics_client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert "# TYPE bridge_delivery_latency_seconds histogram" in response.get_data(as_text=True)


@pytest.mark.parametrize("token", [ADMIN_TOKEN, METRICS_TOKEN])
def test_either_token_opens_the_metrics(metrics_client, token):
    assert metrics_client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert metrics_client.get("/metrics", headers={"Authorization": f"bearer {token}"}).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-token-0123456789abcdef",
        f"Basic {METRICS_TOKEN}",
        f"Bearer {METRICS_TOKEN}x",
        f"Bearer {METRICS_TOKEN[:-1]}",
        "Bearer ünïcødé-tøkén",
        f"Bearer {'a' * 10_000}",
    ],
    ids=["none", "empty", "scheme-only", "scheme-space", "wrong", "basic", "longer", "shorter", "non-ascii", "huge"],
)
def test_without_the_right_bearer_token_the_answer_is_401(metrics_client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = metrics_client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "error" in response.get_json()
    assert "bridge_" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "configured",
    [{}, {"server_metrics_token": METRICS_TOKEN}, {"server_admin_token": ADMIN_TOKEN, "server_session_secret": SESSION_SECRET}],
)
def test_metrics_are_off_until_a_token_is_set(make_settings, configured):
    client = create_app(make_settings(**configured)).test_client()
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    if not configured:
        assert response.status_code == 404
        assert "server.metrics_token" in response.get_json()["error"]
    elif "server_metrics_token" in configured:
        assert response.status_code == 200
    else:
        assert response.status_code == 401  # only the admin token is set: the metrics token is not one


def test_an_unreadable_database_is_503_not_500(metrics_client, settings, caplog):
    with open(settings.database.path, "wb") as handle:
        handle.write(b"this is not a database" * 100)
    response = metrics_client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 503
    assert response.get_json() == {"error": "The database cannot be read."}
    assert response.headers["Cache-Control"] == "no-store"
    assert "Metrics could not read the database" in caplog.text
    assert ADMIN_TOKEN not in caplog.text


def test_no_token_reaches_a_response_or_the_log(metrics_client, pipeline, caplog):
    caplog.set_level(logging.DEBUG)
    bodies = [
        metrics_client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).get_data(as_text=True)
        for token in (METRICS_TOKEN, ADMIN_TOKEN, "wrong-token-0123456789abcdef", METRICS_TOKEN[:-1])
    ]
    for secret in (METRICS_TOKEN, ADMIN_TOKEN, METRICS_TOKEN[:-1]):
        assert all(secret not in body for body in bodies)
        assert secret not in caplog.text


def test_guessing_tokens_at_metrics_is_rate_limited_like_sign_in(metrics_client):
    client = metrics_client
    answers = [client.get("/metrics", headers={"Authorization": f"Bearer wrong-guess-{n:04d}-abcdefgh"}).status_code for n in range(7)]
    assert answers[:5] == [401] * 5
    assert answers[5:] == [429, 429]
    refused = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
