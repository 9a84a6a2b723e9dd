"""Orders in every decision, made by the real pipeline (webhooks through the Flask intake,
the worker against the fake BigCommerce and Refersion), for the status page's tests and
its screenshot."""

from __future__ import annotations

import time

from freezegun import freeze_time

from tests.conftest import post_webhook, status_updated
from tests.fakes import load_fixture

DAY = 86400.0


def today(client, worker, bigcommerce, refersion) -> dict[str, int]:
    """One order per decision but paused and dry run, all today; their ids by name."""
    ids = {
        "reported": bigcommerce.add(load_fixture("manual_discount")),
        "free": bigcommerce.add(load_fixture("odd_cents"), total_inc_tax="0.0000"),
        "pending": bigcommerce.add(load_fixture("guest_without_name"), status_id=1, payment_status="pending"),
        "retrying": bigcommerce.add(load_fixture("multi_currency")),
        "dead": bigcommerce.add(load_fixture("ipv6_only_customer")),
    }
    for name in ("reported", "free", "pending"):
        post_webhook(client, status_updated(ids[name], 11))
        worker.run_until_idle()
    refersion.answer_next(503)
    post_webhook(client, status_updated(ids["retrying"], 11))
    worker.run_until_idle()
    refersion.answer_next(400, body='{"error": "Missing required field: items"}')
    post_webhook(client, status_updated(ids["dead"], 11))
    worker.run_until_idle()
    return ids


def month(client, worker, clock, bigcommerce, refersion, dry_worker) -> dict[str, int]:
    """A realistic month: orders reported and skipped on earlier days, then today one
    retrying, one dead, one waiting for payment and one evaluated in dry run. The store's
    hooks are in place, as `bridge hooks register` leaves them."""
    from bridge.clients.bigcommerce import BigCommerceClient
    from bridge.core.hooks import wanted_scopes
    from tests.conftest import BC_TOKEN, STORE_HASH, WEBHOOK_SECRET

    api = BigCommerceClient(api_url=bigcommerce.url, store_hash=STORE_HASH, access_token=BC_TOKEN, client_id=None, timeout=5)
    api.register_hooks(wanted_scopes(), "https://bridge.example.com/webhooks/bigcommerce", WEBHOOK_SECRET)
    api.close()
    now = time.time()
    fixtures = ("manual_discount", "odd_cents", "multi_currency", "ipv6_only_customer", "guest_without_name")
    history = [
        (27, "r"),
        (25, "r"),
        (24, "s"),
        (21, "r"),
        (20, "r"),
        (17, "rs"),
        (14, "r"),
        (13, "rr"),
        (10, "s"),
        (8, "rr"),
        (6, "r"),
        (4, "rrs"),
        (3, "r"),
        (1, "rs"),
    ]
    next_id = 5001
    for days_ago, kinds in history:
        for kind in kinds:
            order_id = next_id
            next_id += 1
            if kind == "r":
                bigcommerce.add(load_fixture(fixtures[order_id % 4]), id=order_id)
            else:
                bigcommerce.add(load_fixture("odd_cents"), id=order_id, total_inc_tax="0.0000")
            when = now - days_ago * DAY + (order_id % 7) * 3600
            with freeze_time(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))):
                post_webhook(client, status_updated(order_id, 11))
            clock.now = when + 2
            worker.run_until_idle()
    clock.now = time.time() + 2  # after the webhooks of today, which the intake stamps with the real time
    ids = today(client, worker, bigcommerce, refersion)
    ids["dry_run"] = bigcommerce.add(load_fixture("odd_cents"), id=next_id)
    post_webhook(client, status_updated(ids["dry_run"], 11))
    dry_worker.run_until_idle()
    return ids
