"""The status page and an order's story, in HTML, over a database filled by the real
pipeline; signed in with the admin token."""

from __future__ import annotations

import re

import pytest

from bridge.web import chart
from bridge.web.pages import relative
from tests.conftest import BC_TOKEN, REFERSION_SECRET, STORE_HASH, WEBHOOK_SECRET, post_webhook, status_updated, store_user_client
from tests.fakes import load_fixture
from tests.web import status_data

ADMIN_TOKEN = "adm-tok-5c1f9e07d2b84a63"
SESSION_SECRET = "sess-sec-8b2d6f41a9e37c05"
SECRETS = (ADMIN_TOKEN, SESSION_SECRET, BC_TOKEN, REFERSION_SECRET, WEBHOOK_SECRET)


@pytest.fixture
def settings(make_settings):
    return make_settings(server_admin_token=ADMIN_TOKEN, server_session_secret=SESSION_SECRET)


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client) -> None:
    page = client.get("/login").get_data(as_text=True)
    form = {"token": ADMIN_TOKEN}
    if 'name="csrf_token"' in page:
        form["csrf_token"] = csrf(page)
    response = client.post("/login", data=form)
    assert response.status_code in (302, 303), response.get_data(as_text=True)


@pytest.fixture
def admin(client):
    sign_in(client)
    return client


@pytest.fixture
def orders(client, worker, bigcommerce, refersion):
    return status_data.today(client, worker, bigcommerce, refersion)


def text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def assert_no_secret(html: str) -> None:
    for secret in SECRETS:
        assert secret not in html


def test_without_a_session_the_page_sends_you_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    assert client.get("/orders/1").status_code == 302


def test_the_status_page_shows_health_counts_reasons_chart_and_recent_orders(admin, orders):
    html = text(admin.get("/"))
    # connection health
    assert f"<code>{STORE_HASH}</code>" in html
    assert "Reachable with its token" in html and "Accepted" in html
    assert re.search(r"Webhooks</dt>\s*<dd><span class=\"health health-unknown\">Unknown", html)
    # counts: 6 heard of (one from a store the bridge does not serve is not sent here)
    counts = dict((label, int(n)) for n, label in re.findall(r'<span class="count-n">(\d+)</span> <span class="count-label">([^<]+)', html))
    assert counts == {"Received": 5, "Reported": 1, "Skipped": 1, "Waiting": 1, "Retrying": 1, "Dead": 1, "Paused": 0, "Dry run": 0}
    # skip reasons in plain words
    assert re.search(r"<th scope=\"row\">Free order</th><td class=\"num\">1</td>", html)
    # the chart: an accessible SVG with today's bars
    assert 'role="img"' in html and '<title id="chart-title">' in html
    assert "Last 30 days: 1 order reported and 1 skipped." in html
    assert html.count('class="bar-reported"') == 2  # the legend's and today's
    # the recent orders: decision badge, plain words, Refersion's answer, a retry button on the dead one only
    for order_id in orders.values():
        assert f'data-order="{order_id}"' in html
    dead_row = re.search(rf'data-order="{orders["dead"]}">.*?</tr>', html, re.S).group(0)
    assert 'badge-dead">Dead' in dead_row and "Missing required field: items" in dead_row and "HTTP 400" in dead_row
    assert "Retry" in dead_row and f"/orders/{orders['dead']}/replay?store={STORE_HASH}" in dead_row
    reported_row = re.search(rf'data-order="{orders["reported"]}">.*?</tr>', html, re.S).group(0)
    assert "HTTP 200" in reported_row and "Retry" not in reported_row
    assert html.count(">Retry</button>") == 1
    free_row = re.search(rf'data-order="{orders["free"]}">.*?</tr>', html, re.S).group(0)
    assert "free orders are never reported" in free_row
    # times in the viewer's terms, the exact UTC time on hover
    assert re.search(r'<time datetime="[0-9T:-]+Z" title="[0-9 :-]+ UTC" data-relative="past">(just now|\d+ min ago)</time>', html)
    assert_no_secret(html)


def test_no_inline_style_or_script_anywhere(admin, orders):
    for path in ("/", f"/orders/{orders['dead']}"):
        html = text(admin.get(path))
        assert "<style" not in html and " style=" not in html
        assert not re.search(r"<script(?![^>]*\bsrc=)", html)
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", html)  # no inline event handlers


def test_the_search_box_opens_an_orders_story(admin, orders):
    response = admin.get(f"/orders?order=%20%23{orders['dead']}%20")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/orders/{orders['dead']}"
    html = text(admin.get(response.headers["Location"]))
    assert f"Order #{orders['dead']}" in html
    assert 'badge-dead">Dead' in html
    assert "store/order/statusUpdated" in html  # events received
    assert "Decision history" in html and "<strong>Eligible: report it</strong>" in html
    assert "Missing required field: items" in html and "HTTP 400" in html
    assert re.search(r"<dt>Attempts</dt><dd>1</dd>", html)
    assert "Retry" in html
    assert_no_secret(html)

    retrying = text(admin.get(f"/orders/{orders['retrying']}?store={STORE_HASH}"))
    assert re.search(r"Next attempt</dt><dd><time datetime=\"[^\"]+Z\" title=\"[^\"]+ UTC\" data-relative=\"any\">in ", retrying)
    assert "HTTP 503" in retrying


def test_retry_requeues_a_dead_delivery_and_the_worker_sends_it(admin, orders, worker, clock):
    page = text(admin.get("/"))
    response = admin.post(f"/orders/{orders['dead']}/replay?store={STORE_HASH}", data={"csrf_token": csrf(page)})
    assert response.status_code == 302 and response.headers["Location"] == "/#recent"
    html = text(admin.get("/"))
    assert f"Order #{orders['dead']}: re-queued 1 delivery" in html
    row = re.search(rf'data-order="{orders["dead"]}">.*?</tr>', html, re.S).group(0)
    assert 'badge-waiting">Waiting' in row
    clock.advance(1)
    worker.run_until_idle()
    row = re.search(rf'data-order="{orders["dead"]}">.*?</tr>', text(admin.get("/")), re.S).group(0)
    assert 'badge-reported">Reported' in row and "HTTP 200" in row

    again = admin.post(f"/orders/{orders['dead']}/replay", data={"csrf_token": csrf(page), "back": "order"})
    assert again.headers["Location"] == f"/orders/{orders['dead']}"
    assert "nothing was re-queued" in text(admin.get(again.headers["Location"]))


def test_retry_without_the_csrf_token_is_refused(admin, orders):
    response = admin.post(f"/orders/{orders['dead']}/replay?store={STORE_HASH}")
    assert 400 <= response.status_code < 500
    assert 'badge-dead">Dead' in text(admin.get(f"/orders/{orders['dead']}"))


def test_a_paused_order_can_be_retried_once_the_keys_are_fixed(admin, client, make_worker, bigcommerce, refersion):
    refersion.secret_key = "sec_rotated_in_refersion"
    paused = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(paused, 11))
    make_worker().run_until_idle()
    html = text(admin.get("/"))
    assert "Paused: keys refused" in html
    row = re.search(rf'data-order="{paused}">.*?</tr>', html, re.S).group(0)
    assert 'badge-paused">Paused' in row and "Retry" in row
    refersion.secret_key = REFERSION_SECRET
    admin.post(f"/orders/{paused}/replay?store={STORE_HASH}", data={"csrf_token": csrf(html)})
    assert "resumed the paused reports" in text(admin.get("/"))
    make_worker().run_until_idle()
    assert 'badge-reported">Reported' in text(admin.get(f"/orders/{paused}"))


def test_a_dry_run_shows_the_exact_body_it_would_have_sent(admin, client, make_worker, make_settings, bigcommerce, db):
    dry = bigcommerce.add(load_fixture("odd_cents"))
    post_webhook(client, status_updated(dry, 11))
    make_worker(make_settings(rules_dry_run="true")).run_until_idle()
    html = text(admin.get(f"/orders/{dry}"))
    assert 'badge-dry_run">Dry run' in html
    body = db.execute("SELECT payload FROM deliveries WHERE order_id = ?", [dry]).fetchone()[0]
    shown = re.search(r'<pre class="body">(.*?)</pre>', html, re.S).group(1)
    assert shown == body.replace('"', "&#34;")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/orders/123456789", 404),
        ("/orders/abc", 400),
        ("/orders/-5", 400),
        ("/orders/0", 400),
        ("/orders/9223372036854775808", 400),
        ("/orders/9223372036854775807", 404),
        ("/orders/%EF%BC%91", 400),  # a full-width digit one
        ("/orders/1 2", 400),
        ("/orders?order=", 400),
        ("/orders?order=12x", 400),
        ("/orders", 400),
        ("/orders?order=" + "9" * 5000, 400),
        ("/orders/1?store=a-b", 400),
        ("/orders/1?store=" + "a" * 65, 400),
    ],
)
def test_odd_ids_get_a_clear_page_never_a_500(admin, orders, path, status):
    response = admin.get(path)
    assert response.status_code == status
    html = response.get_data(as_text=True)
    assert f"<h1>{status} · " in html and 'href="/"' in html


def test_an_order_of_a_store_the_viewer_cannot_see_is_not_found(admin, orders):
    assert admin.get(f"/orders/{orders['dead']}?store=otherstore").status_code == 404
    response = admin.post(f"/orders/{orders['dead']}/replay?store=otherstore", data={"csrf_token": csrf(text(admin.get("/")))})
    assert response.status_code == 404


def test_wrong_methods_are_refused(admin, orders):
    assert admin.post("/").status_code in (400, 405)
    assert admin.get(f"/orders/{orders['dead']}/replay").status_code == 405


def test_relative_times_read_in_the_viewers_terms():
    now = 1_790_000_000.0
    iso = "2026-09-21T14:13:20Z"  # = now
    assert relative(iso, now) == "just now"
    assert relative(iso, now + 180) == "3 min ago"
    assert relative(iso, now + 5 * 3600) == "5 h ago"
    assert relative(iso, now + 86400 * 2) == "2 days ago"
    assert relative(iso, now - 600) == "in 10 min"
    assert relative(None, now) == "never"
    assert relative(iso, now - 5, past=True) == "just now"  # a clock a little ahead


def test_the_chart_scales_to_a_round_top_and_says_what_it_shows():
    days = [{"day": f"2026-11-{d:02d}", "reported": d % 3, "skipped": 1 if d == 7 else 0} for d in range(1, 31)]
    drawn = chart.chart(days)
    assert [line["label"] for line in drawn["grid"]] == ["0", "1", "2"]
    assert len(drawn["bars"]) == 30 and drawn["bars"][6]["skipped"] is not None and drawn["bars"][0]["skipped"] is None
    assert [tick["label"] for tick in drawn["ticks"]] == ["Nov 30", "Nov 23", "Nov 16", "Nov 9", "Nov 2"]
    assert drawn["summary"].startswith("Last 30 days: 30 orders reported and 1 skipped. Busiest day ")
    assert chart.nice_ceiling(0) == 1 and chart.nice_ceiling(3) == 5 and chart.nice_ceiling(11) == 20
    empty = chart.chart([{"day": "2026-11-01", "reported": 0, "skipped": 0}])
    assert empty["summary"] == "Last 1 days: 0 orders reported and 0 skipped."


def test_a_store_owner_sees_nothing_of_another_store_on_the_pages(settings, orders, db):
    """An owner of one installed store opens the pages of another store's orders."""
    from bridge.web.app import create_app

    owner = store_user_client(create_app(settings), settings, "otherstore", 77)
    page = owner.get("/")
    assert page.status_code == 200
    for order_id in orders.values():
        assert f"#{order_id}" not in text(page)
    assert owner.get(f"/orders/{orders['dead']}").status_code == 404
    assert owner.get(f"/orders/{orders['dead']}?store={STORE_HASH}").status_code == 404
    token = csrf(text(page))
    retry = owner.post(f"/orders/{orders['dead']}/replay?store={STORE_HASH}", data={"csrf_token": token, "back": "status"})
    assert retry.status_code == 404
    assert next(db.query("SELECT state FROM deliveries WHERE order_id = ?", [orders["dead"]]))["state"] == "dead"
