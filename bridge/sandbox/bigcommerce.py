"""A BigCommerce API on 127.0.0.1: V2 orders, products, coupons and store info, V3 hooks,
rate limits and the OAuth token endpoint, in the shapes of ``shared/reference/bigcommerce.md``.

One server plays both hosts: ``api_url`` (``/stores/{hash}/v2|v3/...``) and ``login_url``
(``/oauth2/token``). Stores, orders and hooks are plain dicts behind one lock.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from werkzeug import Request, Response

from bridge.core.rules import STATUS_NAMES  # BigCommerce's system status names
from bridge.sandbox._server import LocalServer, empty_response, json_response, read_json

ERRORS_DOC = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"

PAYMENT_FOR_STATUS = {
    0: "",
    1: "pending",
    4: "refunded",
    5: "void",
    6: "declined",
    7: "pending",
    12: "held for review",
    14: "partially refunded",
}
COUPON_TYPES = {"per_item_discount": 0, "percentage_discount": 1, "per_total_discount": 2, "shipping_discount": 3, "free_shipping": 4}

ORDERS_READ, ORDERS_MODIFY = "store_v2_orders_read_only", "store_v2_orders"
INFO_READ, INFO_MODIFY = "store_v2_information_read_only", "store_v2_information"
MARKETING_READ, MARKETING_MODIFY = "store_v2_marketing_read_only", "store_v2_marketing"
ALL_SCOPES = (ORDERS_MODIFY, INFO_MODIFY, MARKETING_MODIFY)

ORDER_SCOPES = (
    "store/order/created",
    "store/order/updated",
    "store/order/archived",
    "store/order/statusUpdated",
    "store/order/refund/created",
    "store/cart/converted",
)

DEFAULT_WINDOW_MS = 30_000
DISPLAY_QUOTA = 150  # what the headers show when no quota is enforced (Standard plan, 150 per 30 s)
MAX_HOOKS_PER_SCOPE = 10
MAX_PAGE_SIZE = 250  # V2's largest ``limit``
REFUNDS_PAGE_SIZE = 50  # V3's default page size
_AUTO = object()


def money(value: Any) -> str:
    """BigCommerce's money string: four decimals ("69.8400")."""
    return f"{Decimal(str(value)).quantize(Decimal('0.0001'))}"


def rfc2822(when: float) -> str:
    """``Tue, 05 Mar 2019 21:40:11 +0000``."""
    return format_datetime(datetime.fromtimestamp(int(when), UTC))


def parse_date(value: str) -> float:
    """An RFC-2822 or ISO-8601 date (or Unix seconds) as Unix seconds; ValueError when unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _error(status: int, title: str, **extra) -> Response:
    return json_response({"status": status, "title": title, "type": ERRORS_DOC, **extra}, status)


@dataclass
class Token:
    """An access token: which API account (client id) holds it and what it may do."""

    client_id: str
    scopes: frozenset[str] | None  # None: every scope


@dataclass
class Store:
    """One store's data. Read it through the sandbox's helpers (they take the lock)."""

    hash: str
    store_id: str
    name: str
    tokens: dict[str, Token] = field(default_factory=dict)
    quota: int | None = None  # requests per window; None: not enforced
    window_ms: int = DEFAULT_WINDOW_MS
    orders: dict[int, dict] = field(default_factory=dict)
    products: dict[int, list[dict]] = field(default_factory=dict)
    coupons: dict[int, list[dict]] = field(default_factory=dict)
    previous_status: dict[int, int] = field(default_factory=dict)
    hooks: dict[int, dict] = field(default_factory=dict)
    refunds: dict[int, list[dict]] = field(default_factory=dict)  # per order, oldest first
    window_start: float = 0.0
    used: int = 0
    # Coupon codes (see "Coupon codes" below): V3 promotions and their codes, V2 legacy coupons.
    promotions: dict[int, dict] = field(default_factory=dict)
    promotion_codes: dict[str, dict] = field(default_factory=dict)  # by code, case-folded
    legacy_coupons: dict[str, dict] = field(default_factory=dict)  # by code, case-folded
    coupon_refusal: str | None = None  # set: creating a code answers 422 with this title


class SandboxBigCommerce(LocalServer):
    """BigCommerce's API for one or more stores, served over real HTTP on 127.0.0.1.

    ``SandboxBigCommerce("abc123", "token")`` holds one store (pass ``store_hash=None`` for
    none, then ``add_store``). ``require_https_destinations`` applies BigCommerce's rule that a
    hook destination is https on port 443; turn it off for local demo destinations.
    """

    def __init__(
        self,
        store_hash: str | None = "abc123",
        access_token: str = "bc-token-0123456789abcdef",
        *,
        scopes: list[str] | None = None,
        quota: int | None = None,
        window_ms: int = DEFAULT_WINDOW_MS,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret-0123456789abcdef",  # as long as a real one: PyJWT warns under 32 bytes
        require_https_destinations: bool = True,
        latency: float = 0.0,
        clock=time.time,
    ):
        super().__init__(latency=latency)
        self.client_id = client_id
        self.client_secret = client_secret
        self.require_https_destinations = require_https_destinations
        self.clock = clock
        self.stores: dict[str, Store] = {}
        self.deliveries: list[dict] = []  # what ``fire`` sent and what came back
        self._codes: dict[str, dict] = {}
        self._next_hook_id = 1
        self._next_line_id = 1000
        self._next_coupon_id = 1
        self.max_page_size = MAX_PAGE_SIZE  # items per page at most, whatever the limit asked
        self.refunds_page_size = REFUNDS_PAGE_SIZE  # an order's refunds per page (lower it to test paging)
        self._initial_store = (store_hash, access_token, scopes, quota, window_ms)
        if store_hash is not None:
            self.add_store(store_hash, access_token, scopes=scopes, quota=quota, window_ms=window_ms)

    def reset(self) -> None:
        """Back to the store it was created with, without orders, hooks, records or failures."""
        store_hash, access_token, scopes, quota, window_ms = self._initial_store
        with self._lock:
            super().reset()
            self.stores.clear()
            self.deliveries.clear()
            self._codes.clear()
            self._next_hook_id, self._next_line_id, self._next_coupon_id = 1, 1000, 1
            self.max_page_size = MAX_PAGE_SIZE
            self.refunds_page_size = REFUNDS_PAGE_SIZE
            if store_hash is not None:
                self.add_store(store_hash, access_token, scopes=scopes, quota=quota, window_ms=window_ms)

    # --- Stores and tokens -------------------------------------------------------------------

    def add_store(
        self,
        store_hash: str,
        access_token: str | None = None,
        *,
        scopes: list[str] | None = None,
        quota: int | None = None,
        window_ms: int = DEFAULT_WINDOW_MS,
        name: str | None = None,
        store_id: str | None = None,
    ) -> Store:
        """A store; ``access_token`` (if given) belongs to this sandbox's client id."""
        with self._lock:
            store = Store(
                hash=store_hash,
                store_id=store_id or str(1_000_000 + len(self.stores)),
                name=name or f"Sandbox Store {store_hash}",
                quota=quota,
                window_ms=window_ms,
            )
            self.stores[store_hash] = store
            if access_token:
                store.tokens[access_token] = Token(self.client_id, None if scopes is None else frozenset(scopes))
            return store

    def add_token(self, store_hash: str, access_token: str, *, scopes: list[str] | None = None, client_id: str | None = None) -> None:
        """Another API account's token on a store (hooks are visible per client id)."""
        with self._lock:
            self.stores[store_hash].tokens[access_token] = Token(client_id or self.client_id, None if scopes is None else frozenset(scopes))

    def set_quota(self, store_hash: str | None = None, quota: int | None = None, *, window_ms: int | None = None) -> None:
        """Enforce ``quota`` requests per window (None: stop enforcing); starts a fresh window."""
        with self._lock:
            store = self._store(store_hash)
            store.quota = quota
            if window_ms is not None:
                store.window_ms = window_ms
            store.used, store.window_start = 0, 0.0

    def _store(self, store_hash: str | None) -> Store:
        if store_hash is None:
            if len(self.stores) != 1:
                raise ValueError("name the store: the sandbox holds more than one")
            return next(iter(self.stores.values()))
        return self.stores[store_hash]

    # --- Orders ------------------------------------------------------------------------------

    def add_order(
        self,
        id: int | None = None,
        *,
        store_hash: str | None = None,
        status_id: int = 11,
        payment_status: str | None = None,
        lines: list[dict] | None = None,
        coupons: list[str | dict] = (),
        total: Any = None,
        shipping: Any = "0",
        handling: Any = "0",
        tax: Any = "0",
        discount: Any = "0",
        cart_id: Any = _AUTO,
        channel_id: int = 1,
        currency: str = "USD",
        customer: dict | None = None,
        ip_address: str = "203.0.113.24",
        created_at: float | None = None,
        **fields: Any,
    ) -> dict:
        """Add a realistic V2 order and return it (a copy).

        ``lines``: ``{sku, name, qty, price}`` (unit price ex tax; other keys such as ``type``,
        ``product_id`` or ``parent_order_product_id`` pass through). ``coupons``: codes or
        ``{code, discount, type, amount}``. ``total`` overrides ``total_inc_tax``; ``fields``
        override any top-level key of the order JSON.
        """
        with self._lock:
            store = self._store(store_hash)
            order_id = id if id is not None else max(store.orders, default=100) + 1
            now = self.clock() if created_at is None else created_at
            if lines is None:
                lines = [{"sku": f"SKU-{order_id}", "name": "Sandbox product", "qty": 1, "price": total if total is not None else "25.00"}]
            products = [self._product(store.hash, order_id, line) for line in lines]
            order_coupons = [self._coupon(order_id, c) for c in coupons]
            subtotal = sum((Decimal(p["price_ex_tax"]) * p["quantity"] for p in products), Decimal(0))
            coupon_discount = sum((Decimal(c["discount"]) for c in order_coupons), Decimal(0))
            tax_d, ship_d, hand_d, disc_d = (Decimal(str(v)) for v in (tax, shipping, handling, discount))
            total_ex = subtotal - coupon_discount - disc_d + ship_d + hand_d
            total_inc = total_ex + tax_d
            if total is not None:
                total_inc = Decimal(str(total))
                total_ex = total_inc - tax_d
            person = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", **(customer or {})}
            if cart_id is _AUTO:
                cart_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/{store.hash}/{order_id}"))
            base = self.url_or_default()
            link = lambda sub: {"url": f"{base}/stores/{store.hash}/v2/orders/{order_id}/{sub}", "resource": f"/orders/{order_id}/{sub}"}  # noqa: E731
            order = {
                "id": order_id,
                "customer_id": 0 if not person.get("email") else 11,
                "date_created": rfc2822(now),
                "date_modified": rfc2822(now),
                "date_shipped": "",
                "status_id": status_id,
                "status": STATUS_NAMES.get(status_id, "Custom"),
                "custom_status": STATUS_NAMES.get(status_id, "Custom"),
                "subtotal_ex_tax": money(subtotal),
                "subtotal_inc_tax": money(subtotal + tax_d),
                "subtotal_tax": money(tax_d),
                "base_shipping_cost": money(ship_d),
                "shipping_cost_ex_tax": money(ship_d),
                "shipping_cost_inc_tax": money(ship_d),
                "shipping_cost_tax": money(0),
                "shipping_cost_tax_class_id": 2,
                "base_handling_cost": money(hand_d),
                "handling_cost_ex_tax": money(hand_d),
                "handling_cost_inc_tax": money(hand_d),
                "handling_cost_tax": money(0),
                "handling_cost_tax_class_id": 2,
                "base_wrapping_cost": money(0),
                "wrapping_cost_ex_tax": money(0),
                "wrapping_cost_inc_tax": money(0),
                "wrapping_cost_tax": money(0),
                "wrapping_cost_tax_class_id": 3,
                "total_ex_tax": money(total_ex),
                "total_inc_tax": money(total_inc),
                "total_tax": money(tax_d),
                "items_total": sum(p["quantity"] for p in products),
                "items_shipped": 0,
                "payment_method": "Test Payment Gateway",
                "payment_provider_id": f"ch_sandbox_{order_id}",
                "payment_status": PAYMENT_FOR_STATUS.get(status_id, "captured") if payment_status is None else payment_status,
                "refunded_amount": money(0),
                "order_is_digital": False,
                "store_credit_amount": money(0),
                "gift_certificate_amount": money(0),
                "ip_address": ip_address,
                "ip_address_v6": "",
                "geoip_country": "United States",
                "geoip_country_iso2": "US",
                "currency_id": 1,
                "currency_code": currency,
                "currency_exchange_rate": "1.0000000000",
                "default_currency_id": 1,
                "default_currency_code": currency,
                "staff_notes": "",
                "customer_message": "",
                "discount_amount": money(disc_d),
                "coupon_discount": money(coupon_discount),
                "shipping_address_count": 1,
                "is_deleted": False,
                "is_tax_inclusive_pricing": False,
                "ebay_order_id": "0",
                "cart_id": cart_id,
                "billing_address": {
                    "first_name": person.get("first_name", ""),
                    "last_name": person.get("last_name", ""),
                    "company": "",
                    "street_1": "12 Analytical Row",
                    "street_2": "",
                    "city": "Austin",
                    "state": "Texas",
                    "zip": "78701",
                    "country": "United States",
                    "country_iso2": "US",
                    "phone": "",
                    "email": person.get("email", ""),
                    "form_fields": [],
                },
                "is_email_opt_in": False,
                "credit_card_type": None,
                "order_source": "www",
                "channel_id": channel_id,
                "external_source": None,
                "consignments": link("consignments"),
                "products": link("products"),
                "shipping_addresses": link("shipping_addresses"),
                "coupons": link("coupons"),
                "external_id": None,
                "external_merchant_id": None,
                "tax_provider_id": "BasicTaxProvider",
                "customer_locale": "en",
                "external_order_id": "",
                "store_default_currency_code": currency,
                "store_default_to_transactional_exchange_rate": "1.0000000000",
            }
            order.update(fields)
            store.orders[order_id] = order
            store.products[order_id] = products
            store.coupons[order_id] = order_coupons
            store.previous_status[order_id] = 0
            return copy.deepcopy(order)

    def add_fixture(self, fixture: dict, *, store_hash: str | None = None, **changes: Any) -> int:
        """Serve a fixture's ``order``/``products``/``coupons`` as they are (``changes`` applied); returns the id."""
        with self._lock:
            store = self._store(store_hash)
            order = {**copy.deepcopy(fixture["order"]), **changes}
            order_id = order["id"]
            store.orders[order_id] = order
            store.products[order_id] = copy.deepcopy(fixture.get("products", []))
            store.coupons[order_id] = copy.deepcopy(fixture.get("coupons", []))
            store.previous_status[order_id] = 0
            return order_id

    def update_order(self, order_id: int, *, store_hash: str | None = None, **changes: Any) -> dict:
        """Change an order as the merchant would: ``status`` follows ``status_id`` and
        ``date_modified`` moves to now (unless given). Returns the order (a copy)."""
        with self._lock:
            store = self._store(store_hash)
            order = store.orders[order_id]
            if "status_id" in changes and changes["status_id"] != order["status_id"]:
                store.previous_status[order_id] = order["status_id"]
                name = STATUS_NAMES.get(changes["status_id"], "Custom")
                changes.setdefault("status", name)
                changes.setdefault("custom_status", name)
            changes.setdefault("date_modified", rfc2822(self.clock()))
            order.update(changes)
            return copy.deepcopy(order)

    def order(self, order_id: int, *, store_hash: str | None = None) -> dict | None:
        with self._lock:
            found = self._store(store_hash).orders.get(order_id)
            return copy.deepcopy(found)

    def remove_order(self, order_id: int, *, store_hash: str | None = None) -> None:
        with self._lock:
            store = self._store(store_hash)
            for table in (store.orders, store.products, store.coupons, store.previous_status):
                table.pop(order_id, None)

    def _product(self, store_hash: str, order_id: int, line: dict) -> dict:
        line = dict(line)
        self._next_line_id += 1
        line_id = line.pop("id", self._next_line_id)
        qty = int(line.pop("qty", line.pop("quantity", 1)))
        price = Decimal(str(line.pop("price", "0")))
        sku, name = line.pop("sku", ""), line.pop("name", "Sandbox product")
        product = {
            "id": line_id,
            "order_id": order_id,
            "product_id": 80 + line_id % 100,
            "variant_id": 120 + line_id % 100,
            "order_pickup_method_id": 0,
            "order_address_id": 150,
            "name": name,
            "name_customer": name,
            "name_merchant": name,
            "sku": sku,
            "upc": "",
            "type": "physical",
            "base_price": money(price),
            "price_ex_tax": money(price),
            "price_inc_tax": money(price),
            "price_tax": money(0),
            "base_total": money(price * qty),
            "total_ex_tax": money(price * qty),
            "total_inc_tax": money(price * qty),
            "total_tax": money(0),
            "weight": "1.0000",
            "quantity": qty,
            "is_refunded": False,
            "quantity_refunded": 0,
            "refund_amount": money(0),
            "quantity_shipped": 0,
            "parent_order_product_id": None,
            "is_bundled_product": False,
            "brand": "Sandbox",
            "gift_certificate_id": None,
            "applied_discounts": [],
            "product_options": [],
            "configurable_fields": [],
            "discounted_total_inc_tax": money(price * qty),
        }
        product.update(line)
        return product

    def _coupon(self, order_id: int, coupon: str | dict) -> dict:
        spec = {"code": coupon} if isinstance(coupon, str) else dict(coupon)
        self._next_coupon_id += 1
        kind = spec.get("type", 2)
        discount = spec.get("discount", "0")
        return {
            "id": spec.get("id", self._next_coupon_id),
            "coupon_id": spec.get("coupon_id", self._next_coupon_id),
            "order_id": order_id,
            "code": spec["code"],
            "amount": money(spec.get("amount", discount)),
            "type": COUPON_TYPES.get(kind, kind),
            "discount": money(discount),
        }

    # --- Hooks and events ----------------------------------------------------------------------

    def hooks(self, store_hash: str | None = None) -> list[dict]:
        """Every hook on the store, any client id (copies)."""
        with self._lock:
            return [copy.deepcopy(h) for h in self._store(store_hash).hooks.values()]

    def deactivate_hook(self, hook_id: int, *, store_hash: str | None = None) -> None:
        """What BigCommerce does after ~48 h of failed deliveries: ``is_active`` false."""
        with self._lock:
            hook = self._store(store_hash).hooks[hook_id]
            hook["is_active"] = False
            hook["updated_at"] = int(self.clock())

    def webhook_body(
        self,
        scope: str,
        order_id: int,
        *,
        store_hash: str | None = None,
        new_status_id: int | None = None,
        previous_status_id: int | None = None,
        cart_id: str | None = None,
        refund_id: int = 1,
        created_at: int | None = None,
    ) -> dict:
        """The callback body BigCommerce sends for ``scope`` about ``order_id`` (reference §1.4).

        Status ids and the cart id default to the order's current ones when it exists.
        """
        with self._lock:
            store = self._store(store_hash)
            order = store.orders.get(order_id, {})
            if scope == "store/order/statusUpdated":
                new = order.get("status_id", 11) if new_status_id is None else new_status_id
                previous = store.previous_status.get(order_id, 0) if previous_status_id is None else previous_status_id
                data = {"type": "order", "id": order_id, "status": {"previous_status_id": previous, "new_status_id": new}}
            elif scope == "store/cart/converted":
                data = {"type": "cart", "id": cart_id or order.get("cart_id") or str(uuid.uuid4()), "orderId": order_id}
            elif scope == "store/order/refund/created":
                data = {"type": "order", "id": order_id, "refund": {"refund_id": refund_id}}
            else:
                data = {"type": "order", "id": order_id}
            return {
                "scope": scope,
                "store_id": store.store_id,
                "data": data,
                "hash": hashlib.sha1(json.dumps(data, separators=(",", ":")).encode()).hexdigest(),
                "created_at": int(self.clock()) if created_at is None else created_at,
                "producer": f"stores/{store.hash}",
            }

    def fire(self, scope: str, order_id: int, *, store_hash: str | None = None, timeout: float = 5.0, **body_options: Any) -> list[dict]:
        """POST the event to every active hook whose scope covers it, with the hook's headers.

        Only loopback destinations are called (the sandbox never reaches beyond this machine);
        others are recorded as skipped. Returns one ``{hook_id, destination, status, error}`` each.
        """
        body = self.webhook_body(scope, order_id, store_hash=store_hash, **body_options)
        with self._lock:
            hooks = [copy.deepcopy(h) for h in self._store(store_hash).hooks.values() if h["is_active"] and _covers(h["scope"], scope)]
        results = []
        for hook in hooks:
            result = {"hook_id": hook["id"], "destination": hook["destination"], "status": None, "error": None}
            if urlsplit(hook["destination"]).hostname not in ("127.0.0.1", "localhost", "::1"):
                result["error"] = "skipped: not a loopback destination"
            else:
                headers = {"Content-Type": "application/json", "User-Agent": "BigCommerce-Sandbox", **(hook.get("headers") or {})}
                try:
                    answer = requests.post(
                        hook["destination"], data=json.dumps(body), headers=headers, timeout=timeout, allow_redirects=False
                    )
                    result["status"] = answer.status_code
                except requests.RequestException as error:
                    result["error"] = type(error).__name__
            results.append(result)
        with self._lock:
            self.deliveries.extend({**r, "scope": scope, "body": body} for r in results)
        return results

    # --- OAuth ----------------------------------------------------------------------------------

    def issue_code(
        self,
        store_hash: str,
        scopes: list[str] | str,
        *,
        redirect_uri: str | None = None,
        user_email: str = "owner@example.com",
        user_id: int = 9_876_543,
        owner: dict | None = None,
    ) -> str:
        """An authorization code as the auth callback would receive it (single use).

        The installing user is ``user_id``/``user_email``; ``owner`` (``{id, email}``) is the
        store's owner when another user installs (default: the installing user).
        """
        code = "code-" + secrets.token_urlsafe(12)
        scope_list = scopes.split() if isinstance(scopes, str) else list(scopes)
        user = {"id": user_id, "username": user_email, "email": user_email}
        with self._lock:
            self._store(store_hash)
            self._codes[code] = {
                "store_hash": store_hash,
                "scopes": scope_list,
                "redirect_uri": redirect_uri,
                "user": user,
                "owner": {"username": owner.get("email"), **owner} if owner else user,
            }
        return code

    def _oauth_token(self, request: Request) -> Response:
        form = read_json(request) if request.is_json else None
        form = form if isinstance(form, dict) else request.form.to_dict()
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return json_response({"error": "Invalid client id or secret"}, 401)
        missing = [k for k in ("code", "scope", "grant_type", "redirect_uri", "context") if not form.get(k)]
        if missing:
            return json_response({"error": f"Missing required parameter: {missing[0]}"}, 400)
        if form["grant_type"] != "authorization_code":
            return json_response({"error": "Unsupported grant_type"}, 400)
        with self._lock:
            grant = self._codes.get(form["code"])
            if grant is None:
                return json_response({"error": "Invalid authorization code"}, 400)
            if form["context"] != f"stores/{grant['store_hash']}":
                return json_response({"error": "Invalid context"}, 400)
            if grant["redirect_uri"] and form["redirect_uri"] != grant["redirect_uri"]:
                return json_response({"error": "Invalid redirect_uri"}, 400)
            if set(form["scope"].split()) != set(grant["scopes"]):
                return json_response({"error": "Invalid scope"}, 400)
            del self._codes[form["code"]]
            token = "sbx-" + secrets.token_hex(16)
            self.stores[grant["store_hash"]].tokens[token] = Token(self.client_id, frozenset(grant["scopes"]))
        return json_response(
            {
                "access_token": token,
                "scope": " ".join(grant["scopes"]),
                "user": grant["user"],
                "owner": grant["owner"],
                "context": f"stores/{grant['store_hash']}",
                "account_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/{self.client_id}")),
            }
        )

    # --- HTTP --------------------------------------------------------------------------------------

    def url_or_default(self) -> str:
        return self.url if self._server is not None else "https://api.bigcommerce.com"

    def dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == "/oauth2/token":
            if request.method != "POST":
                return _error(405, "Method not allowed")
            return self._oauth_token(request)
        parts = path.split("/")
        if len(parts) < 5 or parts[1] != "stores" or parts[3] not in ("v2", "v3"):
            return _error(404, "Not found")
        store_hash, version, rest = parts[2], parts[3], parts[4:]
        with self._lock:
            store = self.stores.get(store_hash)
            token = store.tokens.get(request.headers.get("X-Auth-Token", "")) if store else None
            if store is None or token is None:
                return _error(401, "Unauthorized", detail="The X-Auth-Token header is missing or not valid for this store.")
            headers, limited = self._count(store)
        if limited:
            return _with_headers(_error(429, "Too Many Requests"), headers)
        needed = _needed_scope(request.method, version, rest)
        if needed and token.scopes is not None and not _granted(token.scopes, needed):
            title = f"You don't have a required scope to access the endpoint: {needed}"
            return _with_headers(_error(403, title, missing_scope=needed), headers)
        return _with_headers(self._route(request, store, token, version, rest), headers)

    def _count(self, store: Store) -> tuple[dict[str, str], bool]:
        now = self.clock()
        window = store.window_ms / 1000
        if not store.window_start or now - store.window_start >= window:
            store.window_start, store.used = now, 0
        quota = store.quota if store.quota is not None else DISPLAY_QUOTA
        limited = store.quota is not None and store.used >= store.quota
        if not limited:
            store.used += 1
        reset_ms = max(1, int((store.window_start + window - now) * 1000))
        headers = {
            "X-Rate-Limit-Requests-Left": str(max(0, quota - store.used)),
            "X-Rate-Limit-Requests-Quota": str(quota),
            "X-Rate-Limit-Time-Window-Ms": str(store.window_ms),
            "X-Rate-Limit-Time-Reset-Ms": str(reset_ms),
        }
        return headers, limited

    def _route(self, request: Request, store: Store, token: Token, version: str, rest: list[str]) -> Response:
        method = request.method
        if version == "v2" and rest == ["store"] and method == "GET":
            return json_response(self._store_info(store))
        if version == "v2" and rest == ["time"] and method == "GET":
            return json_response({"time": int(self.clock())})
        if version == "v2" and rest[0] == "orders":
            return self._orders(request, store, rest[1:])
        if version == "v3" and rest[0] == "hooks":
            return self._hooks(request, store, token, rest[1:])
        if version == "v3" and rest[0] == "orders":
            return self._refunds(request, store, rest[1:])
        if (version, rest[0]) in (("v3", "promotions"), ("v2", "coupons")):
            return self._coupon_codes(request, store, version, rest[1:])
        return _error(404, "The requested resource was not found.")

    def _store_info(self, store: Store) -> dict:
        domain = f"{store.hash}.sandbox.example"
        return {
            "id": store.hash,
            "account_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/account/{store.hash}")),
            "domain": domain,
            "secure_url": f"https://{domain}",
            "control_panel_base_url": f"https://store-{store.hash}.mybigcommerce.com",
            "status": "live",
            "name": store.name,
            "first_name": "Ada",
            "last_name": "Lovelace",
            "address": "12 Analytical Row, Austin, Texas 78701",
            "country": "United States",
            "country_code": "US",
            "phone": "",
            "admin_email": "owner@example.com",
            "order_email": "orders@example.com",
            "timezone": {"name": "Etc/UTC", "raw_offset": 0, "dst_offset": 0, "dst_correction": False, "date_format": {}},
            "language": "en",
            "currency": "USD",
            "currency_symbol": "$",
            "decimal_separator": ".",
            "thousands_separator": ",",
            "decimal_places": 2,
            "currency_symbol_location": "left",
            "weight_units": "LBS",
            "dimension_units": "Inches",
            "plan_name": "Standard",
            "plan_level": "Standard",
            "plan_is_trial": False,
            "industry": "",
            "is_price_entered_with_tax": False,
            "store_id": int(store.store_id),
            "default_site_id": 1000,
            "default_channel_id": 1,
            "features": {"stencil_enabled": True, "sitewidehttps_enabled": True, "multi_storefront_enabled": True},
        }

    # --- V2 orders ----------------------------------------------------------------------------------

    def _orders(self, request: Request, store: Store, rest: list[str]) -> Response:
        try:
            page = max(1, int(request.args.get("page", 1)))
            limit = max(1, min(self.max_page_size, int(request.args.get("limit", 50))))
        except ValueError:
            return _error(400, "The page and limit parameters must be whole numbers.")
        if not rest:
            if request.method != "GET":
                return _error(405, "Method not allowed")
            return self._list_orders(request, store, page, limit)
        try:
            order_id = int(rest[0])
        except ValueError:
            return _error(404, "The requested resource was not found.")
        with self._lock:
            if order_id not in store.orders:
                return _error(404, "The requested resource was not found.")
            if len(rest) == 1:
                if request.method == "PUT":
                    changes = read_json(request)
                    if not isinstance(changes, dict) or not changes:
                        return _error(400, "The request body must be a JSON object.")
                    return json_response(self.update_order(order_id, store_hash=store.hash, **changes))
                if request.method != "GET":
                    return _error(405, "Method not allowed")
                return json_response(store.orders[order_id])
            if len(rest) == 2 and rest[1] in ("products", "coupons") and request.method == "GET":
                items = (store.products if rest[1] == "products" else store.coupons)[order_id]
                return _page(items, page, limit)
        return _error(404, "The requested resource was not found.")

    def _list_orders(self, request: Request, store: Store, page: int, limit: int) -> Response:
        args = request.args
        try:
            bounds = {
                k: parse_date(args[k])
                for k in ("min_date_modified", "max_date_modified", "min_date_created", "max_date_created")
                if args.get(k)
            }
            ints = {k: int(args[k]) for k in ("min_id", "max_id", "status_id", "channel_id", "customer_id") if args.get(k)}
        except ValueError as error:
            return _error(400, f"A filter is not valid: {error}")
        sort_field, _, direction = args.get("sort", "id:asc").partition(":")
        if sort_field not in ("id", "customer_id", "date_created", "date_modified", "status_id", "channel_id", "external_id"):
            return _error(400, f"The sort field {sort_field!r} is not valid.")
        with self._lock:
            orders = list(store.orders.values())
        chosen = []
        for order in orders:
            modified, created = parse_date(order["date_modified"]), parse_date(order["date_created"])
            if "min_date_modified" in bounds and modified < bounds["min_date_modified"]:
                continue
            if "max_date_modified" in bounds and modified > bounds["max_date_modified"]:
                continue
            if "min_date_created" in bounds and created < bounds["min_date_created"]:
                continue
            if "max_date_created" in bounds and created > bounds["max_date_created"]:
                continue
            if ("min_id" in ints and order["id"] < ints["min_id"]) or ("max_id" in ints and order["id"] > ints["max_id"]):
                continue
            if any(order.get(k) != ints[k] for k in ("status_id", "channel_id", "customer_id") if k in ints):
                continue
            if args.get("cart_id") and order.get("cart_id") != args["cart_id"]:
                continue
            chosen.append(order)

        def key(order):
            value = order.get(sort_field)
            if sort_field.startswith("date_"):
                value = parse_date(value)
            return (value is None, value if value is not None else 0, order["id"])

        chosen.sort(key=key, reverse=direction == "desc")
        return _page(chosen, page, limit)

    # --- V3 hooks -------------------------------------------------------------------------------------

    def _hooks(self, request: Request, store: Store, token: Token, rest: list[str]) -> Response:
        method = request.method
        with self._lock:
            mine = {i: h for i, h in store.hooks.items() if h["client_id"] == token.client_id}
            if not rest:
                if method == "GET":
                    return self._list_hooks(request, list(mine.values()))
                if method == "POST":
                    return self._create_hook(request, store, token, mine)
                return _error(405, "Method not allowed")
            try:
                hook_id = int(rest[0])
            except ValueError:
                return _error(404, f"Webhook with id [{rest[0]}] not found")
            if len(rest) != 1 or hook_id not in mine:
                return _error(404, f"Webhook with id [{hook_id}] not found")
            hook = mine[hook_id]
            if method == "GET":
                return json_response({"data": hook, "meta": {}})
            if method == "DELETE":
                del store.hooks[hook_id]
                return json_response({"data": hook, "meta": {}})
            if method == "PUT":
                body = read_json(request)
                allowed = {"scope", "destination", "is_active", "headers"}
                if not isinstance(body, dict) or not (set(body) & allowed):
                    return _error(422, "JSON data is missing or invalid", errors={"body": "At least one field is required."})
                problem = self._hook_problems({**hook, **{k: body[k] for k in allowed if k in body}})
                if problem:
                    return problem
                hook.update({k: body[k] for k in allowed if k in body})
                hook["updated_at"] = int(self.clock())
                return json_response({"data": hook, "meta": {}})
            return _error(405, "Method not allowed")

    def _list_hooks(self, request: Request, hooks: list[dict]) -> Response:
        args = request.args
        if "is_active" in args:
            wanted = args["is_active"].lower() in ("true", "1")
            hooks = [h for h in hooks if h["is_active"] == wanted]
        for name in ("scope", "destination"):
            if args.get(name):
                hooks = [h for h in hooks if h[name] == args[name]]
        try:
            page, limit = max(1, int(args.get("page", 1))), max(1, min(250, int(args.get("limit", 50))))
        except ValueError:
            return _error(400, "The page and limit parameters must be whole numbers.")
        hooks = sorted(hooks, key=lambda h: h["id"])
        chunk = hooks[(page - 1) * limit : page * limit]
        total_pages = max(1, -(-len(hooks) // limit))
        pagination = {
            "total": len(hooks),
            "count": len(chunk),
            "per_page": limit,
            "current_page": page,
            "total_pages": total_pages,
            "links": {"current": f"?page={page}&limit={limit}"},
        }
        return json_response({"data": chunk, "meta": {"pagination": pagination}})

    def _hook_problems(self, hook: dict) -> Response | None:
        errors = {}
        if not isinstance(hook.get("scope"), str) or not hook.get("scope"):
            errors["scope"] = "error.path.missing."
        destination = hook.get("destination")
        if not isinstance(destination, str) or not destination:
            errors["destination"] = "error.path.missing."
        elif self.require_https_destinations:
            parts = urlsplit(destination)
            try:
                port = parts.port
            except ValueError:
                port = -1
            if parts.scheme != "https" or not parts.hostname or port not in (None, 443):
                errors["destination"] = "The destination must be an https URL served on port 443."
        if "is_active" in hook and not isinstance(hook["is_active"], bool):
            errors["is_active"] = "must be a boolean."
        headers = hook.get("headers")
        if headers is not None and (not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values())):
            errors["headers"] = "must be an object of strings."
        if errors:
            return _error(422, "JSON data is missing or invalid", errors=errors)
        return None

    def _create_hook(self, request: Request, store: Store, token: Token, mine: dict[int, dict]) -> Response:
        body = read_json(request)
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        problem = self._hook_problems(body)
        if problem:
            return problem
        same_scope = [h for h in mine.values() if h["scope"] == body["scope"]]
        if any(h["destination"] == body["destination"] for h in same_scope):
            return _error(422, "A webhook with this scope and destination already exists.", errors={"destination": "duplicate"})
        if len(same_scope) >= MAX_HOOKS_PER_SCOPE:
            return _error(422, f"No more than {MAX_HOOKS_PER_SCOPE} webhooks per scope.", errors={"scope": "limit reached"})
        now = int(self.clock())
        hook = {
            "id": self._next_hook_id,
            "client_id": token.client_id,
            "store_hash": store.hash,
            "scope": body["scope"],
            "destination": body["destination"],
            "is_active": body.get("is_active", True),
            "headers": body.get("headers"),
            "created_at": now,
            "updated_at": now,
        }
        self._next_hook_id += 1
        store.hooks[hook["id"]] = hook
        return json_response({"data": hook, "meta": {}})

    # --- V3 refunds (reference/bigcommerce.md 2.6) ---------------------------------------------

    def refund(
        self,
        order_id: int,
        items: list[tuple[int, int]] = (),
        *,
        shipping: Any = "0",
        amount: Any = None,
        reason: str = "Sandbox refund",
        store_hash: str | None = None,
    ) -> dict:
        """Refund an order as the control panel does; returns the refund (a copy).

        ``items``: ``(order_product_id, quantity)`` pairs, refunded at the line's unit price;
        ``shipping``: an amount of shipping; ``amount``: an amount of the order with no item
        (item type ORDER). The order then becomes Refunded (4, payment ``refunded``) once the
        refunds reach its total, else Partially Refunded (14, ``partially refunded``).
        """
        with self._lock:
            store = self._store(store_hash)
            order = store.orders[order_id]
            lines = {line["id"]: line for line in store.products[order_id]}
            refund_items, total = [], Decimal(0)
            for line_id, quantity in items:
                line = lines[line_id]
                value = Decimal(line["price_inc_tax"]) * quantity
                line["quantity_refunded"] += quantity
                line["refund_amount"] = money(Decimal(line["refund_amount"]) + value)
                line["is_refunded"] = line["quantity_refunded"] >= line["quantity"]
                refund_items.append({"item_type": "PRODUCT", "item_id": line_id, "quantity": quantity, "requested_amount": float(value)})
                total += value
            if Decimal(str(shipping)):
                refund_items.append(
                    {"item_type": "SHIPPING", "item_id": 150, "quantity": None, "requested_amount": float(Decimal(str(shipping)))}
                )
                total += Decimal(str(shipping))
            if amount is not None:
                refund_items.append(
                    {"item_type": "ORDER", "item_id": order_id, "quantity": None, "requested_amount": float(Decimal(str(amount)))}
                )
                total += Decimal(str(amount))
            refund_id = 1 + max((r["id"] for refunds in store.refunds.values() for r in refunds), default=0)
            refund = {
                "id": refund_id,
                "order_id": order_id,
                "user_id": 0,
                "created": datetime.fromtimestamp(int(self.clock()), UTC).isoformat(),
                "reason": reason,
                "total_amount": float(total),
                "total_tax": 0,
                "uses_merchant_override_values": False,
                "items": [{**item, "reason": reason, "adjustments": []} for item in refund_items],
                "payments": [
                    {"id": refund_id, "provider_id": "testgateway", "amount": float(total), "offline": False, "is_declined": False,
                     "declined_message": "", "transaction_id": refund_id}
                ],
            }  # fmt: skip
            store.refunds.setdefault(order_id, []).append(refund)
            refunded = Decimal(order["refunded_amount"]) + total
            full = refunded >= Decimal(order["total_inc_tax"])
        self.update_order(
            order_id,
            store_hash=store.hash,
            status_id=4 if full else 14,
            payment_status="refunded" if full else "partially refunded",
            refunded_amount=money(refunded),
        )
        return copy.deepcopy(refund)

    def order_products(self, order_id: int, *, store_hash: str | None = None) -> list[dict]:
        """The order's product lines (copies), as ``GET /v2/orders/{id}/products`` serves them."""
        with self._lock:
            return copy.deepcopy(self._store(store_hash).products.get(order_id, []))

    def refunds(self, order_id: int, *, store_hash: str | None = None) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._store(store_hash).refunds.get(order_id, []))

    def _refunds(self, request: Request, store: Store, rest: list[str]) -> Response:
        """``GET /v3/orders/{id}/payment_actions/refunds`` and ``GET /v3/orders/payment_actions/refunds/{refund_id}``."""
        if request.method != "GET":
            return _error(405, "Method not allowed")
        with self._lock:
            if len(rest) == 3 and rest[1:] == ["payment_actions", "refunds"] and rest[0].isdigit():
                if int(rest[0]) not in store.orders:
                    return _error(404, "The requested resource was not found.")
                return self._refunds_page(request, copy.deepcopy(store.refunds.get(int(rest[0]), [])))
            if len(rest) == 3 and rest[:2] == ["payment_actions", "refunds"] and rest[2].isdigit():
                for refunds in store.refunds.values():
                    for refund in refunds:
                        if refund["id"] == int(rest[2]):
                            return json_response({"data": copy.deepcopy(refund), "meta": {}})
        return _error(404, "The requested resource was not found.")

    def _refunds_page(self, request: Request, found: list[dict]) -> Response:
        """One page of an order's refunds, ``refunds_page_size`` at most (page through ``?page=``)."""
        if not found:
            return empty_response(204)
        try:
            page = max(1, int(request.args.get("page", 1)))
        except ValueError:
            return _error(400, "The page parameter must be a whole number.")
        size = self.refunds_page_size
        chunk = found[(page - 1) * size : page * size]
        total_pages = max(1, -(-len(found) // size))
        pagination = {"total": len(found), "count": len(chunk), "per_page": size, "current_page": page, "total_pages": total_pages}
        return json_response({"data": chunk, "meta": {"pagination": pagination}})

    # --- Coupon codes: V3 promotions' codes and V2 legacy coupons ---------------------------------
    # BigCommerce documents no answer for a duplicate code: this sandbox answers 409 to both
    # APIs (V2's documented answer to a duplicate name) and ``refuse_coupon_codes`` makes every
    # creation answer 422 with a reason, as BigCommerce does for a request it cannot take.

    def add_promotion(self, name: str = "Affiliate codes", *, store_hash: str | None = None, redemption_type: str = "COUPON") -> int:
        """A promotion that codes can be added to (``redemption_type`` COUPON); returns its id."""
        with self._lock:
            store = self._store(store_hash)
            promotion_id = 1 + max(store.promotions, default=0)
            store.promotions[promotion_id] = {"id": promotion_id, "name": name, "redemption_type": redemption_type, "status": "ENABLED"}
            return promotion_id

    def add_coupon_code(self, code: str, promotion_id: int, *, store_hash: str | None = None) -> dict:
        """A code that exists already (made in the control panel, or by another app)."""
        with self._lock:
            return self._new_promotion_code(self._store(store_hash), code, promotion_id, {})

    def coupon_code(self, code: str, *, store_hash: str | None = None) -> dict | None:
        """The code as the store has it (a promotion's code or a legacy coupon), or None."""
        with self._lock:
            store = self._store(store_hash)
            found = store.promotion_codes.get(code.casefold()) or store.legacy_coupons.get(code.casefold())
            return copy.deepcopy(found)

    def refuse_coupon_codes(self, title: str | None = "The promotion has expired", *, store_hash: str | None = None) -> None:
        """Answer every code creation with 422 and ``title`` (None: accept them again)."""
        with self._lock:
            self._store(store_hash).coupon_refusal = title

    def _new_promotion_code(self, store: Store, code: str, promotion_id: int, body: dict) -> dict:
        made = {
            "id": self._next_coupon_id,
            "code": code,
            "promotion_id": promotion_id,
            "max_uses": body.get("max_uses", 0),
            "max_uses_per_customer": body.get("max_uses_per_customer", 0),
            "current_uses": 0,
            "created": datetime.fromtimestamp(int(self.clock()), UTC).isoformat(),
        }
        self._next_coupon_id += 1
        store.promotion_codes[code.casefold()] = made
        return copy.deepcopy(made)

    def _coupon_codes(self, request: Request, store: Store, version: str, rest: list[str]) -> Response:
        with self._lock:
            if version == "v2":
                return self._legacy_coupons(request, store, rest)
            if rest == ["codes"] and request.method == "GET":
                code = request.args.get("code", "")
                if not code:
                    return _error(422, "The code query parameter is required.")
                found = store.promotion_codes.get(code.casefold())
                return json_response({"data": [copy.deepcopy(found)] if found else [], "meta": {}})
            if len(rest) == 2 and rest[1] == "codes" and request.method == "POST":
                return self._create_promotion_code(request, store, rest[0])
            return _error(404, "The requested resource was not found.")

    def _create_promotion_code(self, request: Request, store: Store, promotion: str) -> Response:
        promotion_id = int(promotion) if promotion.isdigit() else 0
        if promotion_id not in store.promotions:
            return _error(404, f"Promotion {promotion} not found.")
        if store.promotions[promotion_id]["redemption_type"] != "COUPON":
            return _error(422, "Coupon codes can only be added to a promotion with redemption_type COUPON.")
        body = read_json(request)
        code = body.get("code") if isinstance(body, dict) else None
        problem = _code_problem(code)
        if problem:
            return _error(422, "JSON data is missing or invalid", errors={"code": problem})
        if store.coupon_refusal:
            return _error(422, store.coupon_refusal)
        if code.casefold() in store.promotion_codes or code.casefold() in store.legacy_coupons:
            return _error(409, f"Coupon code {code} already exists.")
        return json_response({"data": self._new_promotion_code(store, code, promotion_id, body), "meta": {}}, 201)

    def _legacy_coupons(self, request: Request, store: Store, rest: list[str]) -> Response:
        if rest or request.method not in ("GET", "POST"):
            return _error(404, "The requested resource was not found.")
        if request.method == "GET":
            found = store.legacy_coupons.get(request.args.get("code", "").casefold())
            return json_response([copy.deepcopy(found)]) if found else empty_response(204)
        body = read_json(request)
        if not isinstance(body, dict):
            return json_response([{"status": 400, "message": "The request body is not a JSON object."}], 400)
        missing = [name for name in ("name", "code", "type", "amount", "applies_to") if body.get(name) in (None, "")]
        problem = _code_problem(body.get("code")) if not missing else None
        if missing or problem or body.get("type") not in COUPON_TYPES:
            message = f"The field '{missing[0]}' is required." if missing else (problem or "The coupon type is not valid.")
            return json_response([{"status": 400, "message": message}], 400)
        if store.coupon_refusal:
            return json_response([{"status": 422, "message": store.coupon_refusal}], 422)
        code = body["code"]
        names = {coupon["name"] for coupon in store.legacy_coupons.values()}
        if code.casefold() in store.legacy_coupons or code.casefold() in store.promotion_codes or body["name"] in names:
            return json_response([{"status": 409, "message": f"A coupon with the code or name of {code} already exists."}], 409)
        made = {
            "id": self._next_coupon_id,
            "name": body["name"],
            "code": code,
            "type": body["type"],
            "amount": money(body["amount"]),
            "min_purchase": money(body.get("min_purchase") or 0),
            "expires": body.get("expires", ""),
            "enabled": bool(body.get("enabled", True)),
            "applies_to": body["applies_to"],
            "num_uses": 0,
            "max_uses": body.get("max_uses", 0),
            "max_uses_per_customer": body.get("max_uses_per_customer", 0),
            "date_created": rfc2822(self.clock()),
        }
        self._next_coupon_id += 1
        store.legacy_coupons[code.casefold()] = made
        return json_response(copy.deepcopy(made), 201)


def _code_problem(code: Any) -> str | None:
    """BigCommerce's rule for a code: letters, digits, spaces, ``_`` and ``-``, 50 at most."""
    if not isinstance(code, str) or not code:
        return "The code is required."
    if len(code) > 50 or not all(char.isascii() and (char.isalnum() or char in "_- ") for char in code):
        return "Only letters, numbers, white spaces, underscores, and hyphens are allowed, 50 characters at most."
    return None


def _page(items: list, page: int, limit: int) -> Response:
    chunk = items[(page - 1) * limit : page * limit]
    return json_response(chunk) if chunk else empty_response(204)


def _with_headers(response: Response, headers: dict[str, str]) -> Response:
    for name, value in headers.items():
        response.headers[name] = value
    return response


def _covers(hook_scope: str, scope: str) -> bool:
    if hook_scope.endswith("/*"):
        return scope.startswith(hook_scope[:-1])
    return hook_scope == scope


def _needed_scope(method: str, version: str, rest: list[str]) -> str | None:
    """The OAuth scope a request needs (the read-only one for reads)."""
    read = method in ("GET", "HEAD")
    head = rest[0] if rest else ""
    if head == "orders":
        return ORDERS_READ if read else ORDERS_MODIFY
    if version == "v2" and head in ("store", "time"):
        return INFO_READ if read else INFO_MODIFY
    if (version == "v2" and head == "coupons") or (version == "v3" and head == "promotions"):
        return MARKETING_READ if read else MARKETING_MODIFY
    return None  # hooks: the default scope of every API account


def _granted(scopes: frozenset[str], needed: str) -> bool:
    return needed in scopes or (needed.endswith("_read_only") and needed.removesuffix("_read_only") in scopes)


__all__ = ["ALL_SCOPES", "ORDER_SCOPES", "SandboxBigCommerce", "Store", "money", "parse_date", "rfc2822"]
