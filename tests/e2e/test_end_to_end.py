"""``bridge serve`` as a real process, against fake BigCommerce and Refersion servers."""

import json
import os
import signal
from decimal import Decimal

import pytest
import requests

from tests.conftest import BC_TOKEN, REFERSION_SECRET, WEBHOOK_SECRET, envelope, status_updated
from tests.fakes import load_fixture
from tests.processes import alive, free_port, wait_for


@pytest.fixture
def bridge(spawn):
    port = free_port()
    process = spawn(["serve", "--port", str(port)], {"BRIDGE_WORKER_POLL_INTERVAL": "0.05", "WEB_CONCURRENCY": "2"})
    base = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(f"{base}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            assert process.process.poll() is None, process.output
            return False

    wait_for(healthy, timeout=30, interval=0.1)
    return base, process


def send(base, body, token=WEBHOOK_SECRET, **kwargs):
    return requests.post(
        f"{base}/webhooks/bigcommerce",
        data=json.dumps(body),
        headers={"X-Bridge-Token": token, "Content-Type": "application/json"},
        timeout=5,
        **kwargs,
    )


def test_bridge_serve_reports_paid_orders_once_and_stops_cleanly(bridge, bigcommerce, refersion):
    base, process = bridge
    coupons = bigcommerce.add(load_fixture("coupons_one_excluded"))
    bundle = bigcommerce.add(load_fixture("bundle_children_skipped"))
    euro = bigcommerce.add(load_fixture("multi_currency"))
    pending = bigcommerce.add(load_fixture("guest_without_name"), status_id=1, payment_status="pending")
    free = bigcommerce.add(load_fixture("odd_cents"), total_inc_tax="0.0000")

    assert (
        send(base, envelope("store/cart/converted", {"type": "cart", "id": "cart-from-checkout-1", "orderId": bundle})).status_code == 200
    )
    for order_id in (coupons, bundle, euro, pending, free):
        response = send(base, status_updated(order_id, 11))
        assert (response.status_code, response.content) == (200, b"")
    assert send(base, status_updated(coupons, 11)).status_code == 200  # a re-delivery
    assert send(base, status_updated(coupons, 11), token="wrong").status_code == 401
    oversized = b'{"padding": "' + b"x" * (70 * 1024) + b'"}'
    chunked = requests.post(
        f"{base}/webhooks/bigcommerce",
        data=iter([oversized[i : i + 8192] for i in range(0, len(oversized), 8192)]),
        headers={"X-Bridge-Token": WEBHOOK_SECRET, "Content-Type": "application/json"},
        timeout=5,
    )
    assert chunked.status_code == 413

    wait_for(lambda: len(refersion.received) == 3, timeout=30)
    by_order = {received.body["order_id"]: received for received in refersion.received}
    assert sorted(by_order) == sorted(map(str, (coupons, bundle, euro)))
    assert json.loads(by_order[str(euro)].raw, parse_float=Decimal) == load_fixture_expected("multi_currency")
    assert by_order[str(bundle)].body["cart_id"] == "cart-from-checkout-1"
    assert [item["sku"] for item in by_order[str(bundle)].body["items"]] == ["BUNDLE-START"]

    bigcommerce.update(pending, status_id=11, payment_status="captured")
    assert send(base, status_updated(pending, 11, 1, created_at=1_790_000_999)).status_code == 200
    wait_for(lambda: len(refersion.received) == 4, timeout=30)
    assert refersion.received[-1].body["order_id"] == str(pending)
    assert len(refersion.attempts) == 4

    health = requests.get(f"{base}/healthz", timeout=5).json()
    assert health["queue_depth"] == {"events": 0, "deliveries": 0}

    assert process.stop(signal.SIGTERM, timeout=40) == 0, process.output
    log = process.output
    assert "Reported order" in log
    for secret in (WEBHOOK_SECRET, REFERSION_SECRET, BC_TOKEN):
        assert secret not in log


def load_fixture_expected(name):
    from tests.fakes import FIXTURES

    return json.loads((FIXTURES / "orders" / f"{name}.json").read_text(), parse_float=Decimal)["expected_payload"]


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")
def test_a_killed_bridge_serve_takes_its_web_and_worker_down_with_it(bridge):
    """A supervisor restarting a SIGKILLed `bridge serve` must find the port free: no orphans."""
    base, process = bridge
    children = _children(process.process.pid)
    assert len(children) == 2
    process.kill()
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=15)
    assert requests_refused(base)


def requests_refused(base: str) -> bool:
    try:
        requests.get(f"{base}/healthz", timeout=1)
    except requests.ConnectionError:
        return True
    return False
