"""Refersion on 127.0.0.1: the paid-order webhook (``/tracker/orders/paid``) and the REST v2
operations the bridge uses (``/v2/conversion/cancel``, ``/v2/affiliate/list``), in the shapes
of ``shared/reference/refersion.md``.

``orders_url`` = ``{url}/tracker/orders/paid``; ``api_url`` = ``{url}/v2``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

from werkzeug import Request, Response

from bridge.sandbox._server import LocalServer, json_response, read_json

BAD_KEYS = {"error": "Invalid API credentials (error 2)."}
NO_BODY = {"error": "Bad request, no body"}


@dataclass
class Received:
    """An accepted request: its parsed body, raw text and headers."""

    body: dict
    raw: str
    headers: dict
    at: float = field(default_factory=time.time)
    duplicate: bool = False  # the order id had already been accepted

    @property
    def keys(self) -> tuple[str | None, str | None]:
        """The key pair the request carried: (public key, secret key)."""
        return self.headers.get("Refersion-Public-Key"), self.headers.get("Refersion-Secret-Key")


class SandboxRefersion(LocalServer):
    """Refersion's inbound paid-order webhook and REST v2, checking the key pair.

    The pair it is created with is accepted, and any added with ``add_keys`` (several
    merchants' accounts); every accepted request keeps its headers, so a test can tell
    which pair it carried (``Received.keys``).
    """

    def __init__(self, public_key: str = "pub_test_4a2b", secret_key: str = "sec_test_9f8e7d6c5b4a", *, latency: float = 0.0):
        super().__init__(latency=latency)
        self.public_key = public_key  # the first pair; tests may change it to refuse the old one
        self.secret_key = secret_key
        self._initial_keys = (public_key, secret_key)
        self._other_keys: set[tuple[str, str]] = set()
        self._seed()

    def _seed(self) -> None:
        self.received: list[Received] = []  # accepted paid orders
        self.cancellations: list[Received] = []  # accepted conversion/cancel calls
        self.affiliates: list[dict] = [
            _affiliate(1001, "AFF1001", "Grace", "Hopper"),
            _affiliate(1002, "AFF1002", "Alan", "Turing"),
            _affiliate(1003, "AFF1003", "Katherine", "Johnson"),
        ]
        self._next_conversion = 11_900_000

    def reset(self) -> None:
        """Back to its first key pair only and seeded affiliates, with nothing received, recorded or injected."""
        with self._lock:
            super().reset()
            self.public_key, self.secret_key = self._initial_keys
            self._other_keys.clear()
            self._seed()

    @property
    def orders_url(self) -> str:
        return f"{self.url}/tracker/orders/paid"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v2"

    @property
    def order_ids(self) -> list[str]:
        with self._lock:
            return [r.body.get("order_id") for r in self.received]

    def paid_orders(self) -> list[dict]:
        """The bodies of accepted paid orders (copies)."""
        with self._lock:
            return [copy.deepcopy(r.body) for r in self.received]

    def attempts(self) -> int:
        """Every POST to the paid-order webhook, answered or not."""
        return len(self.calls(r"^/tracker/orders/paid$", "POST"))

    def add_keys(self, public_key: str, secret_key: str) -> None:
        """Accept another key pair too (another merchant's account), besides the first pair."""
        with self._lock:
            self._other_keys.add((public_key, secret_key))

    def remove_keys(self, public_key: str, secret_key: str) -> None:
        """Stop accepting a pair added with ``add_keys`` (its account revoked the keys)."""
        with self._lock:
            self._other_keys.discard((public_key, secret_key))

    def accepts(self, public_key: str | None, secret_key: str | None) -> bool:
        """Whether requests with this key pair are let in."""
        with self._lock:
            pair = (public_key, secret_key)
            return pair == (self.public_key, self.secret_key) or pair in self._other_keys

    def add_affiliate(self, id: int, code: str, first_name: str = "Test", last_name: str = "Affiliate", **fields: Any) -> dict:
        with self._lock:
            affiliate = {**_affiliate(id, code, first_name, last_name), **fields}
            self.affiliates.append(affiliate)
            return affiliate

    # --- Failure shortcuts (see also fail_next / slow_next) ---------------------------------

    def unavailable(self, *, times: int = 1, retry_after: str | None = "30", status: int = 503, path: str | None = None) -> None:
        """The next ``times`` requests get a 5xx, with ``Retry-After`` when given."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.fail_next(status, times=times, headers=headers, body={"error": "Service temporarily unavailable"}, path=path)

    def reject(self, status: int = 400, error: str = "Missing required field cart_id", *, times: int = 1, path: str | None = None) -> None:
        """The next ``times`` requests are refused with ``{"error": error}``."""
        self.fail_next(status, times=times, body={"error": error}, path=path)

    def default_error_body(self, status: int) -> str:
        return json.dumps(BAD_KEYS if status == 401 else {"error": f"Injected failure ({status})"})

    # --- HTTP -------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        routes = {
            "/tracker/orders/paid": self._paid,
            "/v2/conversion/cancel": self._cancel,
            "/v2/affiliate/list": self._affiliate_list,
        }
        handler = routes.get(path)
        if handler is None:
            return json_response({"error": "Not found"}, 404)
        if request.method != "POST":
            return json_response({"error": "Method not allowed"}, 405)
        if not self.accepts(request.headers.get("Refersion-Public-Key"), request.headers.get("Refersion-Secret-Key")):
            return json_response(BAD_KEYS, 401)
        body = read_json(request)
        if body is None:
            return json_response(NO_BODY, 404)  # REST v2: 404 means "no body", not "not found"
        if not isinstance(body, dict):
            return json_response({"error": "Invalid field body"}, 400)
        return handler(request, body)

    def _paid(self, request: Request, body: dict) -> Response:
        missing = _missing(body, ("order_id", "cart_id", "currency_code", "items"))
        if not missing and (not isinstance(body["items"], list) or not body["items"]):
            missing = "items"
        if not missing:
            for item in body["items"]:
                missing = _missing(item, ("sku", "quantity", "price")) if isinstance(item, dict) else "items"
                if missing:
                    missing = f"items.{missing}" if missing != "items" else missing
                    break
        if missing:
            return json_response({"error": f"Missing required field {missing}"}, 400)
        if len(str(body["cart_id"])) > 255:
            return json_response({"error": "Invalid field cart_id"}, 400)
        with self._lock:
            duplicate = any(r.body.get("order_id") == body["order_id"] for r in self.received)
            raw = request.get_data(as_text=True)
            self.received.append(Received(body=body, raw=raw, headers=dict(request.headers.items()), duplicate=duplicate))
        return json_response({"status": "success", "order_id": body["order_id"]})

    def _cancel(self, request: Request, body: dict) -> Response:
        missing = _missing(body, ("order_id", "items"))
        if not missing and not isinstance(body["items"], list):
            missing = "items"
        if not missing:
            missing = next(("items.sku" for item in body["items"] if not isinstance(item, dict) or not item.get("sku")), None)
        if missing:
            return json_response({"error": f"Missing required field {missing}"}, 400)
        with self._lock:
            if not any(str(r.body.get("order_id")) == str(body["order_id"]) for r in self.received):
                return json_response({"errors": ["Invalid order ID (error 5)"]}, 422)
            self._next_conversion += 1
            self.cancellations.append(Received(body=body, raw=request.get_data(as_text=True), headers=dict(request.headers.items())))
            return json_response({"conversion_id": str(self._next_conversion)})

    def _affiliate_list(self, request: Request, body: dict) -> Response:
        try:
            limit = int(body.get("limit", 10))
            page = int(body.get("page", 1))
        except (TypeError, ValueError):
            return json_response({"error": "Invalid field limit"}, 400)
        if not 1 <= limit <= 100 or page < 1:
            return json_response({"error": "Invalid field limit" if not 1 <= limit <= 100 else "Invalid field page"}, 400)
        with self._lock:
            results = copy.deepcopy(self.affiliates[(page - 1) * limit : page * limit])
            total = len(self.affiliates)
        return json_response({"total": total, "page": page, "limit": limit, "results": results})


def _missing(body: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return name
    return None


def _affiliate(id: int, code: str, first_name: str, last_name: str) -> dict:
    return {
        "id": str(id),
        "code": code,
        "status": "ACTIVE",
        "first_name": first_name,
        "last_name": last_name,
        "email": f"{first_name.lower()}@affiliates.example",
        "company": "",
        "offer": {"id": "1", "name": "Default offer"},
        "link": f"https://sandbox.refersion.com/c/{code.lower()}",
        "created": "2026-01-05 10:00:00",
    }


__all__ = ["Received", "SandboxRefersion"]
