"""Fakes of the outside world, served over real HTTP on 127.0.0.1 by pytest-httpserver.

They check credentials the way the real services do, answer in their shapes (money
as strings, 204 for empty lists, 404 for unknown orders) and record every request,
so tests assert on what actually crossed the wire.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug import Request, Response

FIXTURES = Path(__file__).parent / "fixtures"
ORDER_PATH = re.compile(r"^/stores/(?P<store>[^/]+)/v2/orders/(?P<id>\d+)(?:/(?P<sub>products|coupons))?$")


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / "orders" / f"{name}.json").read_text())


def json_response(data, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers, content_type="application/json")


@dataclass
class Scripted:
    """A canned answer served instead of the normal one, ``times`` times."""

    match: Callable[[Request], bool]
    respond: Callable[[Request], Response]
    times: int = 1


class FakeBigCommerce:
    """BigCommerce's V2 orders API for one store."""

    def __init__(self, store_hash: str = "abc123", access_token: str = "bc-token-0123456789abcdef"):
        self.store_hash = store_hash
        self.access_token = access_token
        self.orders: dict[int, dict] = {}
        self.products: dict[int, list] = {}
        self.coupons: dict[int, list] = {}
        self.requests: list[tuple[str, str]] = []
        self.script: list[Scripted] = []
        self.page_cap: int | None = None  # serve at most this many list items per page, whatever the limit
        self._lock = threading.Lock()

    def add(self, fixture: dict, **order_changes) -> int:
        """Serve a fixture's order (with ``order_changes`` applied); returns its id."""
        order = {**copy.deepcopy(fixture["order"]), **order_changes}
        order_id = order["id"]
        self.orders[order_id] = order
        self.products[order_id] = copy.deepcopy(fixture["products"])
        self.coupons[order_id] = copy.deepcopy(fixture["coupons"])
        return order_id

    def update(self, order_id: int, **changes) -> None:
        self.orders[order_id].update(changes)

    def fail_next(
        self, status: int, *, times: int = 1, headers: dict | None = None, body: str = '{"status": 500, "title": "Internal error"}'
    ) -> None:
        self.script.append(
            Scripted(lambda r: True, lambda r: Response(body, status=status, headers=headers, content_type="application/json"), times)
        )

    def calls(self, order_id: int | None = None) -> int:
        if order_id is None:
            return len(self.requests)
        return sum(1 for _, path in self.requests if re.search(rf"/orders/{order_id}(/|$)", path))

    def handler(self, request: Request) -> Response:
        respond = None
        with self._lock:
            self.requests.append((request.method, request.path))
            for scripted in self.script:
                if scripted.times > 0 and scripted.match(request):
                    scripted.times -= 1
                    respond = scripted.respond
                    break
        if respond is not None:  # outside the lock: a slow scripted answer must not hold up the others
            return respond(request)
        if request.headers.get("X-Auth-Token") != self.access_token:
            return json_response({"status": 401, "title": "Unauthorized"}, 401)
        match = ORDER_PATH.match(request.path)
        if not match or match["store"] != self.store_hash:
            return json_response({"status": 404, "title": "Not found"}, 404)
        order_id = int(match["id"])
        if order_id not in self.orders:
            return json_response({"status": 404, "title": "The requested resource was not found."}, 404)
        if match["sub"] is None:
            return json_response(self.orders[order_id])
        items = (self.products if match["sub"] == "products" else self.coupons)[order_id]
        page, limit = int(request.args.get("page", 1)), int(request.args.get("limit", 50))
        limit = min(limit, self.page_cap or limit)
        chunk = items[(page - 1) * limit : page * limit]
        if not chunk:
            return Response(status=204)
        return json_response(chunk)


@dataclass
class Received:
    body: dict
    raw: str
    headers: dict
    at: float = field(default_factory=time.time)


class FakeRefersion:
    """Refersion's paid-order webhook: checks the key pair and records every order."""

    def __init__(self, public_key: str = "pub_test_4a2b", secret_key: str = "sec_test_9f8e7d6c5b4a"):
        self.public_key = public_key
        self.secret_key = secret_key
        self.received: list[Received] = []  # accepted orders
        self.attempts: list[str | None] = []  # order_id of every POST, answered or not
        self.script: list[Scripted] = []
        self._lock = threading.Lock()

    def answer_next(
        self, status: int, *, times: int = 1, headers: dict | None = None, body: str = '{"error": "scripted"}', delay: float = 0.0
    ) -> None:
        def respond(request):
            if delay:
                time.sleep(delay)
            return Response(body, status=status, headers=headers, content_type="application/json")

        self.script.append(Scripted(lambda r: True, respond, times))

    @property
    def order_ids(self) -> list[str]:
        return [received.body.get("order_id") for received in self.received]

    def handler(self, request: Request) -> Response:
        raw = request.get_data(as_text=True)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self.attempts.append(body.get("order_id") if isinstance(body, dict) else None)
            for scripted in self.script:
                if scripted.times > 0 and scripted.match(request):
                    scripted.times -= 1
                    respond = scripted.respond
                    break
            else:
                respond = None
        if respond is not None:
            return respond(request)
        if request.headers.get("Refersion-Public-Key") != self.public_key or request.headers.get("Refersion-Secret-Key") != self.secret_key:
            return json_response({"error": "Invalid API credentials (error 2)."}, 401)
        if not isinstance(body, dict):
            return json_response({"error": "Bad request, no body"}, 400)
        with self._lock:
            self.received.append(Received(body=body, raw=raw, headers=dict(request.headers)))
        return json_response({"status": "success", "order_id": body.get("order_id")})
