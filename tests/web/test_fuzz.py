"""A hostile-input run on every public route, then the worker on whatever it stored.

Seeded random requests through the Flask test client on the real SQLite file: webhooks with and
without a valid token or signature (random JSON shapes, huge, deep, unicode, lone surrogates,
wrong content types and methods), the app callbacks (random query strings, forged JWTs), ``/api``,
``/login``, ``/settings``, ``/orders``, ``/metrics``. Afterwards: no 5xx was answered, the worker
works off everything stored without an internal error, and ``/healthz`` is ok.

The short run (1,000 requests) is in the default suite; the long one (10,000) is marked ``fuzz``:
``python -m pytest -m fuzz tests/web/test_fuzz.py``. ``FUZZ_SEED`` replays a failing run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import random
import string
import time
from urllib.parse import quote

import jwt
import pytest

from bridge.web.app import create_app
from tests.conftest import STORE_HASH, WEBHOOK_SECRET, envelope
from tests.fakes import load_fixture

ADMIN_TOKEN = "adm-3e8b1f6c9a2d7e4b0c5f8a1d6e3b"
SESSION_SECRET = "ses-8c2f5a9e1b7d4c0a6f3e9b2d5a8c"
METRICS_TOKEN = "met-4a7d0c3f6b9e2a5d8c1f4b7e0a3d"
APP = {}  # the sandbox's app credentials (client_id, client_secret), set by the fixture
SCOPES = [
    "store/order/statusUpdated", "store/order/created", "store/order/updated", "store/order/refund/created",
    "store/cart/converted", "store/app/uninstalled", "store/customer/created", "", "x" * 300,
]  # fmt: skip
TEXTS = ["", " ", "\u202e", "٣", "😀", "\ufeff", "\x00", "<script>", "'; DROP TABLE events; --", "ada@example.com", "%00", "../.."]


def random_text(rng: random.Random, longest: int = 40) -> str:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(TEXTS)
    if pick < 0.5:
        return "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(0, longest)))
    return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, longest)))


def random_json(rng: random.Random, depth: int = 0):
    pick = rng.random()
    if depth > 4 or pick < 0.45:
        return rng.choice(
            [
                None,
                True,
                False,
                0,
                -1,
                2**63,
                2**64,
                1.5,
                -0.0,
                1e308,
                rng.randint(-(2**70), 2**70),
                random_text(rng),
                str(rng.randint(0, 10**20)),
            ]
        )
    if pick < 0.75:
        return {random_text(rng, 12): random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]


def data_for(rng: random.Random, scope: str) -> object:
    """Mostly the right shape for the scope, with random values; sometimes anything."""
    if rng.random() < 0.1:
        return random_json(rng)
    order_id = rng.randint(1, 50) if rng.random() < 0.7 else rng.choice([rng.randint(1, 2**63 - 1), "17", "-3", 0, "x", None, 1.0, True])
    data = {"type": rng.choice(["order", "cart", "store", random_text(rng, 8)]), "id": order_id}
    if "status" in scope or rng.random() < 0.2:
        data["status"] = rng.choice([{"previous_status_id": 0, "new_status_id": rng.randint(0, 14)}, random_json(rng), None])
    if "refund" in scope:
        data["refund"] = rng.choice([{"refund_id": rng.randint(1, 9)}, {"refund_id": "x"}, random_json(rng)])
    if "cart" in scope:
        data.update(id=rng.choice([random_text(rng, 60), "d30016e2-23c0-4a90-884f-2e92ac135476", 7]), orderId=order_id)
    if rng.random() < 0.3:
        data[random_text(rng, 10)] = random_json(rng)
    return data


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def webhook_body(rng: random.Random) -> tuple[bytes | str, str]:
    """A body and its content type."""
    pick = rng.random()
    content_type = (
        "application/json" if rng.random() < 0.85 else rng.choice(["text/plain", "application/x-www-form-urlencoded", "", "a/b+json"])
    )
    if pick < 0.55:
        scope = rng.choice(SCOPES)
        body = envelope(scope, {}, store_hash=rng.choice([STORE_HASH, STORE_HASH, "other1", "x" * 70, "a-b"]))
        body["data"] = data_for(rng, scope)
        body["created_at"] = int(time.time()) - rng.randint(0, 10**6)  # distinct events, mostly
        if rng.random() < 0.15:
            del body[rng.choice(list(body))]
        if rng.random() < 0.1:
            body[rng.choice(["created_at", "store_id", "hash", "producer"])] = random_json(rng)
        return json.dumps(body, ensure_ascii=rng.random() < 0.5), content_type
    if pick < 0.65:
        return json.dumps(random_json(rng)), content_type
    if pick < 0.72:
        return deep(rng.choice([31, 33, 100, 5000, 100_000])), content_type
    if pick < 0.78:  # lone surrogates, escaped and raw
        return rng.choice(['{"scope":"\\ud800","producer":"stores/abc123","data":{}}', b'{"a":"\xed\xa0\x80"}']), content_type
    if pick < 0.84:  # around the size limit
        size = rng.choice([64 * 1024 - 40, 64 * 1024 + 1, 200_000])
        body = envelope("store/order/created", {"type": "order", "id": 5, "pad": "x" * size})
        return json.dumps(body), content_type
    return bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 300))), content_type


def signed_headers(body: bytes, secret: str, rng: random.Random) -> dict:
    message_id = f"msg_{rng.randint(0, 10**9)}"
    timestamp = str(int(time.time()) + rng.choice([0, 0, 0, -1000, 1000]))
    digest = hmac.new(secret.encode(), message_id.encode() + b"." + timestamp.encode() + b"." + body, hashlib.sha256).digest()
    return {"webhook-id": message_id, "webhook-timestamp": timestamp, "webhook-signature": f"v1,{base64.b64encode(digest).decode()}"}


def webhook_request(rng: random.Random) -> dict:
    body, content_type = webhook_body(rng)
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    auth = rng.random()
    if auth < 0.55:
        headers = {"X-Bridge-Token": WEBHOOK_SECRET}
    elif auth < 0.7:
        headers = signed_headers(raw, APP["client_secret"], rng)
    elif auth < 0.8:
        headers = signed_headers(raw, "wrong-secret", rng)
    else:
        headers = rng.choice([{}, {"X-Bridge-Token": random_text(rng)}, {"X-Bridge-Token": WEBHOOK_SECRET[:-1]}])
    method = "POST" if rng.random() < 0.93 else rng.choice(["GET", "PUT", "DELETE", "PATCH"])
    return {"method": method, "path": "/webhooks/bigcommerce", "data": raw, "headers": headers, "content_type": content_type}


def forged_jwt(rng: random.Random) -> str:
    now = int(time.time())
    claims = {
        "aud": rng.choice([APP["client_id"], "someone-else"]),
        "iss": "bc",
        "iat": now + rng.choice([0, -10_000, 10_000]),
        "nbf": now - 5,
        "exp": now + rng.choice([600, -600]),
        "sub": rng.choice([f"stores/{STORE_HASH}", "stores/other1", "stores/", random_text(rng, 20)]),
        "user": rng.choice([{"id": rng.randint(1, 5), "email": "a@b.c"}, {"id": "x"}, random_json(rng), None]),
        "owner": rng.choice([{"id": 1, "email": "a@b.c"}, random_json(rng)]),
        "url": rng.choice(["/", "//evil.example", "https://evil.example", random_text(rng)]),
    }
    if rng.random() < 0.2:
        del claims[rng.choice(list(claims))]
    pick = rng.random()
    if pick < 0.4:  # the right key: forged only in its claims
        return jwt.encode(claims, APP["client_secret"], algorithm="HS256")
    if pick < 0.6:
        return jwt.encode(claims, "not-the-secret-" + "0123456789abcdef" * 4, algorithm=rng.choice(["HS256", "HS512"]))
    if pick < 0.7:
        unsigned = [
            base64.urlsafe_b64encode(json.dumps(part, default=str).encode()).rstrip(b"=").decode() for part in ({"alg": "none"}, claims)
        ]
        return ".".join(unsigned) + "."
    return random_text(rng, 200)


def callback_request(rng: random.Random) -> dict:
    path = rng.choice(
        ["/bigcommerce/auth", "/bigcommerce/load", "/bigcommerce/uninstall", "/bigcommerce/remove-user", "/bigcommerce/remove_user"]
    )
    query = {}
    if path.endswith("auth"):
        for name, value in (("code", random_text(rng, 30)), ("scope", "store_v2_orders_read_only"), ("context", f"stores/{STORE_HASH}")):
            if rng.random() < 0.8:
                query[name] = value if rng.random() < 0.7 else random_text(rng)
    else:
        query["signed_payload_jwt"] = forged_jwt(rng)
    if rng.random() < 0.2:
        query[random_text(rng, 10)] = random_text(rng, 100)
    if rng.random() < 0.05:
        query["signed_payload_jwt"] = "x" * 20_000
    method = "GET" if rng.random() < 0.9 else "POST"
    return {"method": method, "path": path, "query_string": query}


def page_request(rng: random.Random) -> dict:
    order = quote(rng.choice([str(rng.randint(1, 60)), "0", "-1", "99999999999999999999", random_text(rng, 10), "%00"]), safe="")
    path = rng.choice(
        [
            "/", "/orders", f"/orders/{order}", f"/orders/{order}/replay", "/api/status", f"/api/orders/{order}",
            f"/api/orders/{order}/replay", "/login", "/logout", "/settings", "/metrics", "/healthz",
            "/login/once/" + quote(random_text(rng, 20), safe=""),
        ]
    )  # fmt: skip
    method = rng.choice(["GET", "GET", "POST", "PUT", "DELETE"])
    headers = rng.choice(
        [
            {}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"Authorization": f"Bearer {METRICS_TOKEN}"},
            {"Authorization": "Bearer " + random_text(rng)}, {"Authorization": random_text(rng)},
            {"Cookie": "session=" + random_text(rng, 80)},
        ]
    )  # fmt: skip
    query = {rng.choice(["store", "next", "page", "since", random_text(rng, 6)]): random_text(rng) for _ in range(rng.randint(0, 3))}
    form = {rng.choice(["token", "csrf_token", "public_key", "secret_key", "dry_run", "excluded_coupons"]): random_text(rng, 60)}
    request = {"method": method, "path": path, "headers": headers, "query_string": query}
    if method == "POST":
        request["data"] = form
    return request


def next_request(rng: random.Random) -> dict:
    pick = rng.random()
    if pick < 0.6:
        return webhook_request(rng)
    if pick < 0.78:
        return callback_request(rng)
    return page_request(rng)


def send(client, request: dict):
    kwargs = {key: value for key, value in request.items() if key not in ("method", "path")}
    # No HTTP client can send a line break inside a header value (the test client refuses to).
    kwargs["headers"] = {name: value.replace("\r", "").replace("\n", "") for name, value in kwargs.get("headers", {}).items()}
    return client.open(request["path"], method=request["method"], **kwargs)


@pytest.fixture
def fuzz_settings(make_settings, bigcommerce):
    APP.update(client_id=bigcommerce.client_id, client_secret=bigcommerce.client_secret)
    return make_settings(
        server_admin_token=ADMIN_TOKEN,
        server_session_secret=SESSION_SECRET,
        server_metrics_token=METRICS_TOKEN,
        bigcommerce_client_id=bigcommerce.client_id,
        bigcommerce_client_secret=bigcommerce.client_secret,
        bigcommerce_login_url=bigcommerce.url,
        server_public_url="https://bridge.example.test",
    )


def fuzz(settings, make_worker, bigcommerce, refersion, count: int, caplog) -> int:
    """Run ``count`` hostile requests, then the worker to idle; returns how many events were stored."""
    seed = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    print(f"fuzz seed {seed} (replay with FUZZ_SEED={seed})")
    rng = random.Random(seed)
    for order_id in range(1, 51):  # some of the orders the webhooks name exist, paid
        bigcommerce.add(load_fixture("manual_discount"), id=order_id)
    # The sandbox announces BigCommerce's 150 requests per 30 s; fifty orders at three calls each
    # reach it, and the bridge rightly holds the store until the window resets, leaving events
    # due but held (seen as "left unprocessed" with some seeds).
    bigcommerce.set_quota(quota=1_000_000)
    app = create_app(settings)
    client = app.test_client()
    answered: dict[int, int] = {}
    for number in range(count):
        request = next_request(rng)
        response = send(client, request)
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"seed {seed}, request {number}: {request!r} answered {response.status_code}"

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        worker = make_worker(settings, clock=time.time)
        worker.run_until_idle(limit=count * 4)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]
    assert not errors, f"seed {seed}: the worker logged {[record.getMessage() for record in errors][:5]}"
    db = worker.db
    internal = db.execute("SELECT count(*) FROM events WHERE last_error LIKE 'internal error%'").fetchone()[0]
    internal += db.execute("SELECT count(*) FROM deliveries WHERE last_error LIKE 'internal error%'").fetchone()[0]
    assert internal == 0, f"seed {seed}: {internal} item(s) failed with an internal error"
    waiting = db.execute("SELECT count(*) FROM events WHERE state IN ('pending', 'working') AND due_at <= ?", [time.time()]).fetchone()[0]
    assert waiting == 0, f"seed {seed}: {waiting} event(s) left unprocessed"
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["status"] in ("ok", "degraded"), health.get_json()
    stored = db.execute("SELECT count(*) FROM events").fetchone()[0]
    print(f"fuzz: {count} requests, answers {dict(sorted(answered.items()))}, {stored} events stored, {len(refersion.received)} reports")
    return stored


def test_a_thousand_hostile_requests_get_no_5xx_and_leave_nothing_the_worker_cannot_process(
    fuzz_settings, make_worker, bigcommerce, refersion, caplog
):
    stored = fuzz(fuzz_settings, make_worker, bigcommerce, refersion, 1_000, caplog)
    assert stored > 20  # the run reached the store and the worker, not only the front door


@pytest.mark.fuzz
def test_ten_thousand_hostile_requests_get_no_5xx_and_leave_nothing_the_worker_cannot_process(
    fuzz_settings, make_worker, bigcommerce, refersion, caplog
):
    fuzz(fuzz_settings, make_worker, bigcommerce, refersion, 10_000, caplog)
