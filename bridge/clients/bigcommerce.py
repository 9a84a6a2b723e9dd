"""BigCommerce: the REST client and the schemas that normalise what it returns.

Built on the ``bigcommerce`` package (bigcommerce-api-python): its ``OAuthConnection``
keeps the session, the auth headers, URL and query building and the status-code
exceptions. It is wrapped where it falls short (see README, "BigCommerce API use"):

- its base URL is a fixed ``https://{host}``: ``full_path`` is overridden to use
  ``bigcommerce.api_url`` (plain http for local fakes and the demo);
- its timeout is a fixed 7 s: set from ``bigcommerce.timeout``;
- a 429 raises at once: it becomes a ``BigCommerceError`` carrying
  ``X-Rate-Limit-Time-Reset-Ms``, and the worker holds the store back that long
  (never sleeping inside a call: one store's quota must not stall another store);
  the last answer's quota headers are kept (``rate_limit``) so a long walk through the
  orders can wait for the reset before a request the quota would refuse;
- it sends whatever it is asked: after an answer whose ``X-Rate-Limit-Requests-Left`` is
  ``QUOTA_RESERVE`` or less, the client sends nothing until ``X-Rate-Limit-Time-Reset-Ms``
  has passed and raises the same 429-like error instead (``held_back``), so the worker holds
  the store without a request BigCommerce would refuse;
- a 204 (empty list) comes back as a truthy empty object: read as ``[]``;
- a 200 that is not JSON crashes inside it (``e.message``): checked first;
- its resource classes drop keys that clash with method names (``products``,
  ``coupons``…): they are not used; raw JSON goes through the schemas below, which
  parse every money string as Decimal.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from typing import TypeVar

import requests
from bigcommerce import exception as bc_exception
from bigcommerce.connection import Connection, OAuthConnection
from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validate

from bridge.clients.errors import reason
from bridge.clients.refersion import Reply
from bridge.config import CouponSettings
from bridge.core import hooks as wanted
from bridge.core.payload import text
from bridge.core.retry import Failure, parse_http_date
from bridge.schemas import Lenient

log = logging.getLogger(__name__)

PAGE_SIZE = 250  # the V2 maximum: one call for all but the largest orders
# Requests left in the store's quota window at which the client stops sending until the window
# resets: a request the headers say will be refused is never sent (other apps share the quota).
QUOTA_RESERVE = 1
QUOTA_RESET_MARGIN = 0.001  # seconds added to the announced reset: it is whole milliseconds, rounded down
WINDOW_TOLERANCE = 0.5  # seconds: answers whose announced resets differ by less belong to one window
HOOKS_PAGE_SIZE = 250
T = TypeVar("T")


class BigCommerceError(Exception):
    """A BigCommerce call that did not succeed. Never carries credentials."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        failure: Failure | None = None,
        retry_after: float | None = None,
        detail: str = "",
    ):
        super().__init__(message)
        self.status = status
        self.failure = failure
        self.retry_after = retry_after
        # What the answer said (its title, or the connection's innermost error), in one line.
        self.detail = detail

    @property
    def missing_scope(self) -> str | None:
        """The OAuth scope a 403 names, when BigCommerce's answer names one."""
        if self.status != 403:
            return None
        found = re.search(r"\b(store_[a-z0-9_]+)\b", self.detail)
        return found.group(1) if found else None


# --- Schemas: raw BigCommerce JSON in, plain values out ------------------------------


class Money(fields.Decimal):
    """A BigCommerce money string ("69.8400"); empty, null or missing reads as zero."""

    ZERO = Decimal("0")

    def __init__(self, **kwargs):
        super().__init__(load_default=lambda: Money.ZERO, **kwargs)

    def deserialize(self, value, attr=None, data=None, **kwargs):
        if value is None or value == "":
            return self.ZERO
        return super().deserialize(value, attr, data, **kwargs)


class Text(fields.String):
    """A string that may be null, missing or padded in BigCommerce's answer; reads trimmed, "" when empty."""

    def __init__(self, **kwargs):
        super().__init__(load_default="", **kwargs)

    def deserialize(self, value, attr=None, data=None, **kwargs):
        # marshmallow hands None straight back when allow_none: map it before that.
        if value is None:
            return ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        return text(super().deserialize(value, attr, data, **kwargs))


class Count(fields.Integer):
    """A whole number that may be null in BigCommerce's answer; reads as ``default``."""

    def __init__(self, default: int | None = 0, **kwargs):
        self._default = default
        super().__init__(load_default=default, allow_none=True, **kwargs)

    def deserialize(self, value, attr=None, data=None, **kwargs):
        if value is None or value == "":
            return self._default
        return super().deserialize(value, attr, data, **kwargs)


class Flag(fields.Boolean):
    """A boolean that may be null; reads as False."""

    def __init__(self, **kwargs):
        super().__init__(load_default=False, **kwargs)

    def deserialize(self, value, attr=None, data=None, **kwargs):
        return False if value is None else super().deserialize(value, attr, data, **kwargs)


class BillingAddressSchema(Lenient):
    first_name = Text()
    last_name = Text()
    email = Text()


class OrderSchema(Lenient):
    """``GET /v2/orders/{id}``, reduced to what the rules and the payload read."""

    id = fields.Integer(required=True)
    status_id = fields.Integer(required=True)
    status = Text()
    payment_status = Text()
    is_deleted = Flag()
    channel_id = Count(default=1)
    total_inc_tax = Money()
    total_tax = Money()
    shipping_cost_ex_tax = Money()
    handling_cost_ex_tax = Money()
    coupon_discount = Money()
    discount_amount = Money()
    currency_code = Text()
    default_currency_code = Text()
    cart_id = Text()
    items_total = Count(default=None)  # the quantity of every line together: tells when the lines are all read
    ip_address = Text()
    ip_address_v6 = Text()
    billing_address = fields.Nested(BillingAddressSchema, load_default=lambda: BillingAddressSchema().load({}))
    date_created = Text()
    date_modified = Text()

    @post_load
    def modified_at(self, data, **kwargs):
        data["modified_at"] = parse_http_date(data["date_modified"])
        return data

    @pre_load
    def tidy(self, data, **kwargs):
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("payment_status"), str):
                data["payment_status"] = data["payment_status"].strip().lower()
            if not isinstance(data.get("billing_address"), dict):
                data.pop("billing_address", None)
        return data


class OrderProductSchema(Lenient):
    """One line of ``GET /v2/orders/{id}/products``."""

    id = fields.Integer(required=True)
    product_id = Count()
    type = Text()
    name = Text()
    sku = Text()
    quantity = Count()
    price_ex_tax = Money()
    parent_order_product_id = Count(default=None)

    @pre_load
    def tidy(self, data, **kwargs):
        if isinstance(data, dict):
            data = dict(data)
        return data


class OrderCouponSchema(Lenient):
    """One entry of ``GET /v2/orders/{id}/coupons``."""

    code = Text()
    discount = Money()


class WholeNumber(fields.Integer):
    """An integer sent as a JSON number: no strings, no booleans (``true`` is not user 1)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("Not a whole number.")
        return super()._deserialize(value, attr, data, **kwargs)


class UserSchema(Lenient):
    """A control-panel user as the token answer and the signed payloads name one."""

    id = WholeNumber(required=True, validate=validate.Range(min=0, max=2**63 - 1))
    email = fields.String(load_default=None, allow_none=True)


class TokenAnswerSchema(Lenient):
    """``POST {login_url}/oauth2/token``'s answer (reference/bigcommerce.md 4.1)."""

    access_token = fields.String(required=True, validate=validate.Length(min=1, max=4096))
    scope = fields.String(required=True)
    context = fields.String(
        required=True, validate=validate.Regexp(r"\Astores/[A-Za-z0-9]{1,64}\Z", error="Must look like stores/<store_hash>.")
    )
    user = fields.Nested(UserSchema, required=True)
    owner = fields.Nested(UserSchema, required=True)
    account_uuid = fields.String(load_default=None, allow_none=True)


# --- The client -------------------------------------------------------------------


class _Connection(OAuthConnection):
    """The package's connection, pointed at ``api_url`` with our timeout."""

    def __init__(self, *, api_url: str, store_hash: str, access_token: str, client_id: str | None, timeout: float, version: str):
        super().__init__(client_id, store_hash, access_token, host=api_url, api_path="/stores/{}/" + version + "/{}")
        self.timeout = timeout
        self.api_url = api_url

    def full_path(self, url):
        return self.api_url + self.api_path.format(self.store_hash, url)

    def _handle_response(self, url, res, suppress_empty=True):
        self._last_response = res
        if res.status_code in (200, 201, 202):
            try:
                res.json()
            except ValueError:
                raise BigCommerceError(
                    f"BigCommerce answered {res.status_code} to {url} with a body that is not JSON",
                    status=res.status_code,
                    failure=Failure.BAD_RESPONSE,
                ) from None
        # The base class's handler: OAuthConnection's own one fails unless all four
        # rate-limit headers are present; 429s are handled in BigCommerceClient._get.
        return Connection._handle_response(self, url, res, suppress_empty)


def _reset_seconds(headers) -> float | None:
    try:
        return max(0.0, int(headers["X-Rate-Limit-Time-Reset-Ms"]) / 1000)
    except (KeyError, ValueError, TypeError):
        return None


def _detail(content: bytes | str | None) -> str:
    """The ``title`` of BigCommerce's JSON error (and a scope it names), else the body, short."""
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    try:
        found = json.loads(content or "")
    except ValueError:
        found = None
    if isinstance(found, list) and found and isinstance(found[0], dict):
        found = found[0]  # V2 errors: [{"status": 403, "message": "..."}]
    if isinstance(found, dict):
        title = found.get("title") or found.get("message") or ""
        scope = found.get("missing_scope")
        if isinstance(title, str) and title:
            if isinstance(scope, str) and scope and scope not in title:
                title = f"{title}: {scope}"
            return _short(title)
    return _short(content)


def _short(content: bytes | str | None, limit: int = 300) -> str:
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    content = (content or "").strip().replace("\n", " ")
    return content[:limit] + ("…" if len(content) > limit else "")


CREATED, REPAIRED, FINE, FAILED = "created", "repaired", "fine", "failed"


@dataclass(frozen=True)
class HookResult:
    """What registering one scope's hook did."""

    scope: str
    action: str  # CREATED, REPAIRED, FINE or FAILED
    hook: dict  # as created or found; only the scope when failed
    problems: tuple[str, ...] = ()  # what was repaired (core.hooks' problem names)
    error: BigCommerceError | None = None  # why it failed

    @property
    def ok(self) -> bool:
        return self.action != FAILED


def _direct(what: Callable[[], T]) -> T:
    return what()


@dataclass(frozen=True)
class RateLimit:
    """The store's API quota as BigCommerce's last answer told it (``X-Rate-Limit-*`` headers)."""

    requests_left: int | None
    reset_seconds: float | None  # until the quota is refreshed, counted from ``at``
    quota: int | None
    at: float  # time.monotonic() when the answer came

    @classmethod
    def from_headers(cls, headers, at: float) -> RateLimit:
        left, quota = _whole(headers.get("X-Rate-Limit-Requests-Left")), _whole(headers.get("X-Rate-Limit-Requests-Quota"))
        return cls(left, _reset_seconds(headers), quota, at)

    def wait_before_next(self, reserve: int, now: float | None = None) -> float:
        """Seconds to wait before the next request so that ``reserve`` requests stay unspent; 0: go now.

        Once the announced reset has passed the quota is fresh again, whatever was left.
        """
        if self.requests_left is None or self.reset_seconds is None or self.requests_left > reserve:
            return 0.0
        return max(0.0, self.at + self.reset_seconds - (time.monotonic() if now is None else now))


def _whole(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def rfc2822(when: float) -> str:
    """Unix seconds as BigCommerce writes dates (``Tue, 05 Mar 2019 21:40:11 +0000``)."""
    return format_datetime(datetime.fromtimestamp(int(when), UTC))


@dataclass(frozen=True)
class OrdersPage:
    """One page of a walk through orders by ``date_modified``.

    ``listed_until``: every order modified before this instant (Unix seconds) has been listed
    once this page is handled; orders modified in that very second may follow on the next page.
    None when the page's dates could not be read.
    """

    orders: list[dict]
    listed_until: float | None


class QuotaGate:
    """One store's API quota as every client of the store in one worker sees it.

    The worker serves a store on several threads at once, each with its own client: a gate
    shared by them keeps the requests in flight in the count, so that together they never
    send one the quota would refuse. ``X-Rate-Limit-Requests-Left`` of the latest answer,
    less the requests still in flight (some may be counted in it already: the count errs
    on the safe side), must stay above ``QUOTA_RESERVE``; otherwise nothing is sent until
    the window resets.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.left: int | None = None  # from the latest answer of the current window
        self.resets_at: float | None = None  # when the current window ends (on the clients' clock)
        self.spent_until = 0.0  # nothing is sent before this time: the window's quota is used up

    def enter(self, now: float) -> float:
        """Count a request about to be sent and return 0, or return the seconds to wait (nothing counted)."""
        with self._lock:
            if self.resets_at is not None and now >= self.resets_at:
                self.left = self.resets_at = None  # a fresh window: the next answers tell its quota
            if now < self.spent_until:
                return self.spent_until - now
            if self.left is not None and self.resets_at is not None and self.left - self.in_flight <= QUOTA_RESERVE:
                self.spent_until = self.resets_at + QUOTA_RESET_MARGIN
                return self.spent_until - now
            self.in_flight += 1
            return 0.0

    def leave(self, left: int | None, reset: float | None, now: float) -> None:
        """A counted request was answered (``left`` and ``reset`` from its headers, None when absent)."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)
            if left is None or reset is None:
                return
            resets_at = now + reset
            if self.resets_at is None or resets_at > self.resets_at + WINDOW_TOLERANCE:
                self.left, self.resets_at = left, resets_at  # the first answer of a new window
            else:
                self.left = min(left, self.left if self.left is not None else left)  # answers arrive out of order
            if left <= QUOTA_RESERVE:
                self.spent_until = max(self.spent_until, resets_at + QUOTA_RESET_MARGIN)


class BigCommerceClient:
    """Reads one store's orders. Counts its calls: the store's quota is shared."""

    def __init__(
        self,
        *,
        api_url: str,
        store_hash: str,
        access_token: str,
        client_id: str | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        quota: QuotaGate | None = None,
        quota_wait: float = 0.0,
    ):
        """:param quota: the store's gate shared with the other clients of the store (the worker's threads); its own if None.
        :param quota_wait: seconds a request may wait for the store's quota window to reset, rather than
            raise at once (a worker lane, which serves one store's item at a time: its wait stalls no other store)."""
        self.store_hash = store_hash
        self.clock = clock  # the worker's clock: quota resets are times on it
        self._v2 = _Connection(
            api_url=api_url, store_hash=store_hash, access_token=access_token, client_id=client_id, timeout=timeout, version="v2"
        )
        self._v3 = _Connection(
            api_url=api_url, store_hash=store_hash, access_token=access_token, client_id=client_id, timeout=timeout, version="v3"
        )
        self.calls = 0
        self.rate_limit: RateLimit | None = None  # from the last answer that carried the headers
        self.quota = quota or QuotaGate()
        self.quota_wait = quota_wait
        self.held_back = False  # the last call was not sent: the quota headers said it would be refused

    def _enter_quota(self, resource: str) -> None:
        """Count the request against the store's quota, or raise a 429-like error, without sending,
        while the answers so far say the quota would refuse it."""
        wait = self.quota.enter(self.clock())
        while 0 < wait <= self.quota_wait:
            # A short wait for the next window beats giving up an order's evaluation half done.
            time.sleep(wait)
            wait = self.quota.enter(self.clock())
        self.held_back = wait > 0
        if self.held_back:
            raise BigCommerceError(
                f"BigCommerce rate limit: the store's quota is spent until its window resets; {resource} not requested",
                status=429,
                retry_after=wait,
                detail=f"X-Rate-Limit-Requests-Left was {QUOTA_RESERVE} or less",
            )

    def _call(self, connection: _Connection, method: str, resource: str, *, body: dict | None = None, **query):
        """One request through the package's connection; returns parsed JSON, or None for 204."""
        self._enter_quota(resource)
        self.calls += 1
        connection._last_response = None
        try:
            return self._send(connection, method, resource, body=body, **query)
        finally:
            answer = connection._last_response
            headers = answer.headers if answer is not None else {}
            self.quota.leave(_whole(headers.get("X-Rate-Limit-Requests-Left")), _reset_seconds(headers), self.clock())
            if "X-Rate-Limit-Requests-Left" in headers:
                self.rate_limit = RateLimit.from_headers(headers, time.monotonic())

    def _send(self, connection: _Connection, method: str, resource: str, *, body: dict | None = None, **query):
        try:
            if method == "GET":
                result = connection.get(resource, **query)
            elif method == "POST":
                result = connection.create(resource, body)
            elif method == "PUT":
                result = connection.put(resource, body)
            elif method == "DELETE":
                result = connection.delete(resource)
            else:
                raise ValueError(f"unsupported method {method}")
        except bc_exception.RateLimitingException as error:
            connection._last_response = connection._last_response or error.response
            raise BigCommerceError(
                f"BigCommerce rate limit reached on {resource}",
                status=429,
                retry_after=_reset_seconds(error.response.headers),
                detail=_detail(error.content),
            ) from None
        except bc_exception.HttpException as error:
            raise BigCommerceError(
                f"BigCommerce answered {error.status_code} to {resource}: {_short(error.content)}",
                status=error.status_code,
                detail=_detail(error.content),
            ) from None
        except requests.Timeout:
            raise BigCommerceError(
                f"BigCommerce did not answer {resource} in time",
                failure=Failure.TIMEOUT,
                detail=f"no answer within {connection.timeout:g} s",
            ) from None
        except requests.RequestException as error:
            raise BigCommerceError(
                f"Could not reach BigCommerce for {resource}: {type(error).__name__}",
                failure=Failure.CONNECTION,
                detail=_short(reason(error), 200),
            ) from None
        if connection._last_response is not None and connection._last_response.status_code == 204:
            return None
        return result

    def _get(self, resource: str, **query):
        """One V2 GET; returns parsed JSON, or None for 204."""
        return self._call(self._v2, "GET", resource, **query)

    def _v3_data(self, method: str, resource: str, what: str, *, body: dict | None = None, **query):
        """One V3 request; returns the envelope's ``data`` and ``meta``."""
        found = self._call(self._v3, method, resource, body=body, **query)
        if found is None:
            return None, {}
        if not isinstance(found, dict) or "data" not in found:
            raise BigCommerceError(f"BigCommerce sent {what} without its data", failure=Failure.BAD_RESPONSE)
        meta = found.get("meta") if isinstance(found.get("meta"), dict) else {}
        return found["data"], meta

    def _load(self, schema: Schema, data, what: str, many: bool = False):
        try:
            return schema.load(data, many=many)
        except ValidationError as error:
            raise BigCommerceError(
                f"BigCommerce sent {what} we cannot read: {_short(str(error.messages))}", failure=Failure.BAD_RESPONSE
            ) from None

    def _get_list(self, resource: str, what: str, schema: Schema, complete: Callable[[list[dict]], bool] | None = None) -> list[dict]:
        """Every item of a V2 list, page by page.

        :param complete: says from the items read so far that none can follow; without it, or
            while it says no, reading goes on to an empty page or a 204.
        """
        items: list[dict] = []
        page = 1
        while True:
            batch = self._get(resource, page=page, limit=PAGE_SIZE)
            if batch is None or batch == {}:
                break
            if not isinstance(batch, list):
                raise BigCommerceError(f"BigCommerce sent {what} that is not a list", failure=Failure.BAD_RESPONSE)
            if not batch:
                break
            items.extend(self._load(schema, batch, what, many=True))
            # A short page is not proof of the last one (BigCommerce may answer fewer than asked
            # for while more follow): only an empty page, a 204 or what ``complete`` knows is.
            if len(batch) < PAGE_SIZE and complete is not None and complete(items):
                break
            page += 1
        return items

    def close(self) -> None:
        self._v2._session.close()
        self._v3._session.close()

    # --- Store information and access (``bridge check``) ---------------------------------

    def store_info(self) -> dict:
        """``GET /v2/store``: the store's name, domain and settings (scope Information & Settings)."""
        data = self._get("store")
        if not isinstance(data, dict) or not data:
            raise BigCommerceError("BigCommerce sent an empty answer for the store's information", failure=Failure.BAD_RESPONSE)
        return data

    def probe_orders(self) -> None:
        """``GET /v2/orders?limit=1``: raises unless the token may read orders."""
        self._get("orders", limit=1)

    # --- Webhooks (V3 ``/hooks``) ----------------------------------------------------------

    def list_hooks(self) -> list[dict]:
        """Every hook of this API account on the store (other accounts' hooks are not visible)."""
        found = self._v3_pages("hooks", "a list of webhooks", limit=HOOKS_PAGE_SIZE)
        return [hook for hook in found if isinstance(hook, dict)]

    def _v3_pages(self, resource: str, what: str, **query) -> list:
        """Every page of a V3 list (``meta.pagination.total_pages``); [] for a 204 or an empty first page."""
        items: list = []
        page = 1
        while True:
            data, meta = self._v3_data("GET", resource, what, page=page, **query)
            if not data:
                break
            if not isinstance(data, list):
                raise BigCommerceError(f"BigCommerce sent {what} that is not a list", failure=Failure.BAD_RESPONSE)
            items.extend(data)
            pagination = meta.get("pagination") if isinstance(meta.get("pagination"), dict) else {}
            total_pages = pagination.get("total_pages")
            if not isinstance(total_pages, int) or page >= total_pages:
                break
            page += 1
        return items

    def create_hook(self, *, scope: str, destination: str, headers: dict[str, str], is_active: bool = True) -> dict:
        body = {"scope": scope, "destination": destination, "is_active": is_active, "headers": headers}
        data, _ = self._v3_data("POST", "hooks", "the new webhook", body=body)
        return data if isinstance(data, dict) else {}

    def update_hook(self, hook_id: int, **changes) -> dict:
        """``PUT /v3/hooks/{id}`` with ``scope``, ``destination``, ``is_active`` or ``headers``."""
        data, _ = self._v3_data("PUT", f"hooks/{int(hook_id)}", f"webhook {hook_id}", body=changes)
        return data if isinstance(data, dict) else {}

    def delete_hook(self, hook_id: int) -> None:
        self._v3_data("DELETE", f"hooks/{int(hook_id)}", f"webhook {hook_id}")

    def register_hooks(
        self,
        scopes: tuple[str, ...] | list[str],
        destination: str,
        secret: str,
        *,
        call: Callable[[Callable[[], T]], T] | None = None,
        report: Callable[[HookResult], None] | None = None,
    ) -> list[HookResult]:
        """Create the hooks ``scopes`` need and repair ours that are wrong; idempotent.

        ``call`` runs each request (the CLI waits out a 429 through it); ``report`` hears each
        result as soon as it is known. A hook BigCommerce refuses is a failed result.

        :raise BigCommerceError: a failure every other hook would meet too (token refused, rate
            limit, BigCommerce unreachable): the results so far were reported.
        """
        call = call or _direct
        results = []
        for state in wanted.compare(scopes, destination, secret, call(self.list_hooks)):
            try:
                if state.hook is None:
                    headers = {wanted.HEADER: secret}
                    made = call(lambda s=state, h=headers: self.create_hook(scope=s.scope, destination=destination, headers=h))
                    result = HookResult(state.scope, CREATED, made or {"scope": state.scope})
                elif state.problems:
                    changes = wanted.repair(state, destination, secret)
                    call(lambda s=state, c=changes: self.update_hook(s.hook["id"], **c))
                    result = HookResult(state.scope, REPAIRED, state.hook, state.problems)
                else:
                    result = HookResult(state.scope, FINE, state.hook)
            except BigCommerceError as error:
                if error.status in (401, 403, 429) or error.failure in (Failure.CONNECTION, Failure.TIMEOUT):
                    raise
                result = HookResult(state.scope, FAILED, {"scope": state.scope}, error=error)
            results.append(result)
            if report is not None:
                report(result)
        return results

    def fetch_order(self, order_id: int) -> dict | None:
        """The order's current state, or None when BigCommerce has no such order."""
        try:
            data = self._get(f"orders/{order_id}")
        except BigCommerceError as error:
            if error.status == 404:
                return None
            raise
        if not isinstance(data, dict) or not data:
            raise BigCommerceError(f"BigCommerce sent an empty answer for order {order_id}", failure=Failure.BAD_RESPONSE)
        return self._load(OrderSchema(), data, f"order {order_id}")

    def orders_modified(self, since: float, until: float) -> Iterator[OrdersPage]:
        """Every order modified from ``since`` to ``until`` (Unix seconds, both included), oldest
        change first, a page per request; the next page is asked for only when the caller wants it.

        ``GET /v2/orders?min_date_modified=…&max_date_modified=…&sort=date_modified:asc`` until an
        empty page or a 204. Each next page starts from the last date seen (``page=1`` again, the
        orders of that second already seen left out) rather than asking for page N+1: an order
        modified during the walk leaves the window, and plain page numbers would then shift the
        rest by one and skip an order.
        """
        cursor, seen, page = float(int(since)), set(), 1
        while True:
            found = self._get(
                "orders",
                min_date_modified=rfc2822(cursor),
                max_date_modified=rfc2822(until),
                sort="date_modified:asc",
                limit=PAGE_SIZE,
                page=page,
            )
            if found is None or found == {} or found == []:
                return
            if not isinstance(found, list):
                raise BigCommerceError("BigCommerce sent a list of orders that is not a list", failure=Failure.BAD_RESPONSE)
            orders = self._load(OrderSchema(), found, "a list of orders", many=True)
            fresh = [order for order in orders if not (order["modified_at"] == cursor and order["id"] in seen)]
            last = orders[-1]["modified_at"]
            if last is not None and last > cursor:
                cursor, seen, page = last, {order["id"] for order in orders if order["modified_at"] == last}, 1
            else:  # a whole page of one second (or of unreadable dates): on to the next page number
                seen |= {order["id"] for order in orders}
                page += 1
            yield OrdersPage(fresh, cursor if last is not None else None)

    def fetch_order_products(self, order_id: int, items_total: int | None = None) -> list[dict]:
        """The order's lines. With the order's ``items_total``, a page whose lines bring the quantity read
        to exactly that total is the last one: no call for the empty page that would follow."""

        def complete(lines: list[dict]) -> bool:
            return items_total is not None and sum(line["quantity"] or 0 for line in lines) == items_total

        return self._get_list(f"orders/{order_id}/products", f"the lines of order {order_id}", OrderProductSchema(), complete)

    def fetch_order_coupons(self, order_id: int) -> list[dict]:
        return self._get_list(f"orders/{order_id}/coupons", f"the coupons of order {order_id}", OrderCouponSchema())

    # --- Refunds (V3 ``payment_actions/refunds``) -------------------------------------------

    def fetch_order_refunds(self, order_id: int) -> list[dict]:
        """Every refund of the order, oldest first, from every page (``GET /v3/orders/{id}/payment_actions/refunds``); [] for a 204."""
        what = f"the refunds of order {order_id}"
        data = self._v3_pages(f"orders/{int(order_id)}/payment_actions/refunds", what)
        refunds = {refund["id"]: refund for refund in self._load(RefundSchema(), data, what, many=True)}  # a page read twice counts once
        return sorted(refunds.values(), key=lambda refund: refund["id"])

    # --- Coupon codes (scope Marketing, modify: ``bridge coupons push``, Refersion's triggers) -------

    def create_coupon_code(self, code: str, template: CouponSettings, *, now: float) -> CouponCode:
        """Create ``code`` from the template through its API; a code that already exists is returned (``created`` False).

        BigCommerce documents no answer for a duplicate code (V3 ``/promotions/{id}/codes``
        documents only its 201; V2 ``/coupons`` says "must be unique", and answers a duplicate
        name with 409): any 400, 409 or 422 is followed by one look-up by code, and a code
        found is done. One call when the code is new, two when it is not.

        :raise BigCommerceError: BigCommerce refused, or could not be reached or read.
        """
        try:
            if template.api == "promotions":
                body = coupon_code_body(code, template)
                found, _ = self._v3_data("POST", f"promotions/{int(template.promotion_id)}/codes", f"the new coupon code {code}", body=body)
            else:
                found = self._call(self._v2, "POST", "coupons", body=legacy_coupon_body(code, template, now))
        except BigCommerceError as error:
            if error.status not in DUPLICATE_ANSWERS:
                raise
            existing = self.find_coupon_code(code, api=template.api)
            if existing is None:
                raise
            return CouponCode(id=existing["id"], code=existing["code"] or code, created=False, status=200)
        made = self._load(CouponCodeSchema(), found if isinstance(found, dict) else {}, f"the new coupon code {code}")
        return CouponCode(id=made["id"], code=made["code"] or code, created=True, status=self._status(template.api))

    def find_coupon_code(self, code: str, *, api: str) -> dict | None:
        """The code as BigCommerce has it (``{id, code}``; codes are not case-sensitive), or None."""
        if api == "promotions":
            found, _ = self._v3_data("GET", "promotions/codes", f"coupon code {code}", code=code)
        else:
            found = self._get("coupons", code=code)
        if not found:
            return None
        if not isinstance(found, list):
            raise BigCommerceError("BigCommerce sent a list of coupon codes that is not a list", failure=Failure.BAD_RESPONSE)
        for item in self._load(CouponCodeSchema(), found, "a list of coupon codes", many=True):
            if item["code"].casefold() == code.casefold():
                return item
        return None

    def _status(self, api: str) -> int:
        answer = (self._v3 if api == "promotions" else self._v2)._last_response
        return answer.status_code if answer is not None else 201


# --- Coupon codes: bodies, answers -----------------------------------------------------------

DUPLICATE_ANSWERS = (400, 409, 422)  # statuses after which a code is looked up: it may exist already
LEGACY_NAME_LENGTH = 100


class CouponCodeSchema(Lenient):
    """A code as ``/v3/promotions/codes`` or ``/v2/coupons`` answers it."""

    id = Count(default=None)
    code = Text()


@dataclass(frozen=True)
class CouponCode:
    id: int | None
    code: str
    created: bool  # False: it existed already
    status: int  # BigCommerce's last answer: 201 created, 200 found by the look-up


def coupon_code_body(code: str, template: CouponSettings) -> dict:
    """``POST /v3/promotions/{id}/codes``: the code and its limits (the promotion holds the discount)."""
    return {"code": code, "max_uses": template.max_uses, "max_uses_per_customer": template.max_uses_per_customer}


def legacy_coupon_body(code: str, template: CouponSettings, now: float) -> dict:
    """``POST /v2/coupons``: a whole legacy coupon built from the template; money as strings."""
    body = {
        "name": f"Refersion {code}"[:LEGACY_NAME_LENGTH],  # unique, like the code
        "code": code,
        "type": template.discount_type,
        "amount": str(template.amount if template.amount is not None else Decimal("0")),
        # Category 0 stands for the whole catalogue (BigCommerce's own example).
        "applies_to": {"entity": "categories", "ids": list(template.applies_to) or [0]},
        "enabled": True,
        "max_uses": template.max_uses,
        "max_uses_per_customer": template.max_uses_per_customer,
    }
    if template.min_purchase is not None:
        body["min_purchase"] = str(template.min_purchase)
    if template.expires_after_days is not None:
        body["expires"] = rfc2822(now + template.expires_after_days * 86400)
    return body


@dataclass(frozen=True)
class BigCommerceReply(Reply):
    """BigCommerce's answer to a write, in the outbox's terms (Reply's fields, told as BigCommerce's)."""

    @classmethod
    def of_error(cls, error: BigCommerceError) -> BigCommerceReply:
        retry_after = str(math.ceil(error.retry_after)) if error.retry_after is not None else None
        return cls(error.status, body=error.detail or str(error), retry_after=retry_after, failure=error.failure)

    @property
    def summary(self) -> str:
        if self.failure is Failure.TIMEOUT:
            return "BigCommerce did not answer in time"
        if self.failure is not None:
            return f"could not reach BigCommerce ({self.body})" if self.body else "could not reach BigCommerce"
        answered = f"BigCommerce answered HTTP {self.status}"
        return f"{answered}: {self.body[:200]}" if self.body else answered


# --- The OAuth token exchange (app installs) ----------------------------------------------


def exchange_code(
    *,
    login_url: str,
    client_id: str,
    client_secret: str,
    code: str,
    scope: str,
    store_hash: str,
    redirect_uri: str,
    timeout: float,
) -> dict:
    """Trade an install's authorization code for the store's access token.

    ``POST {login_url}/oauth2/token`` (form-encoded, as the ``bigcommerce`` package sends it).
    Returns ``store_hash``, ``access_token``, ``scopes`` (a list), ``user`` and ``owner``
    (``{id, email}``) and ``account_uuid``, checked: the answer is for ``stores/{store_hash}``.

    :raise BigCommerceError: the login server refused (``status``), could not be reached or
        did not answer in time (``failure``), or answered something unreadable
        (``Failure.BAD_RESPONSE``). Its message and detail never hold the code or a secret.
    """
    context = f"stores/{store_hash}"
    form = {
        "client_id": client_id,
        "client_secret": client_secret,
        "code": code,
        "context": context,
        "scope": scope,
        "grant_type": "authorization_code",
        "redirect_uri": redirect_uri,
    }
    hidden = (code, client_secret)
    url = f"{login_url.rstrip('/')}/oauth2/token"
    try:
        answer = requests.post(url, data=form, headers={"Accept": "application/json"}, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        raise BigCommerceError(
            "BigCommerce's login server did not answer in time", failure=Failure.TIMEOUT, detail=f"no answer within {timeout:g} s"
        ) from None
    except requests.RequestException as error:
        raise BigCommerceError(
            f"Could not reach BigCommerce's login server: {type(error).__name__}",
            failure=Failure.CONNECTION,
            detail=_hide(_short(reason(error), 200), hidden),
        ) from None
    if answer.status_code != 200:
        detail = _hide(_login_detail(answer.content), hidden)
        raise BigCommerceError(
            f"BigCommerce's login server answered {answer.status_code}" + (f": {detail}" if detail else ""),
            status=answer.status_code,
            detail=detail,
        )
    try:
        found = answer.json()
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise BigCommerceError(
            "BigCommerce's login server answered with a body that is not a JSON object",
            failure=Failure.BAD_RESPONSE,
            detail="the answer is not a JSON object",
        )
    try:
        token = TokenAnswerSchema().load(found)
    except ValidationError as error:
        # Field names and marshmallow's sentences only: the values may hold the token.
        problems = ", ".join(sorted(str(name) for name in error.messages)) if isinstance(error.messages, dict) else "the body"
        raise BigCommerceError(
            f"BigCommerce's login server sent a token answer we cannot read (check: {problems})",
            failure=Failure.BAD_RESPONSE,
            detail=f"unreadable fields: {problems}",
        ) from None
    if token["context"] != context:
        raise BigCommerceError(
            f"BigCommerce's login server answered for {token['context']}, not for {context}",
            failure=Failure.BAD_RESPONSE,
            detail=f"the answer names {token['context']}",
        )
    return {
        "store_hash": store_hash,
        "access_token": token["access_token"],
        "scopes": token["scope"].split(),
        "user": token["user"],
        "owner": token["owner"],
        "account_uuid": token["account_uuid"],
    }


def _login_detail(content: bytes) -> str:
    """The login server's error sentence (``error``, ``error_description``, ``title``…), else its body, short."""
    text = content.decode("utf-8", "replace")
    try:
        found = json.loads(text or "")
    except ValueError:
        found = None
    if isinstance(found, dict):
        words = [found.get(key) for key in ("error", "error_description", "title", "message")]
        words = [word for word in words if isinstance(word, str) and word.strip()]
        if words:
            return _short(": ".join(dict.fromkeys(words)))
    return _short(text, 200)


def _hide(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with any of ``secrets`` the server echoed back cut out."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return text


# --- Refund schemas (``fetch_order_refunds``) ------------------------------------------------


class RefundItemSchema(Lenient):
    """One item of a refund: what was returned (``item_type``), of which line (``item_id``), how many."""

    item_type = Text()
    item_id = Count(default=None)  # an order-product id for PRODUCT items
    quantity = Count()
    requested_amount = Money()
    reason = Text()

    @post_load
    def upper_type(self, data, **kwargs):
        data["item_type"] = data["item_type"].upper()
        return data


class RefundSchema(Lenient):
    """One V3 refund of an order (reference/bigcommerce.md 2.6)."""

    id = fields.Integer(required=True, strict=True)
    order_id = Count(default=None)
    created = Text()
    reason = Text()
    total_amount = Money()
    total_tax = Money()
    items = fields.List(fields.Nested(RefundItemSchema), load_default=list, allow_none=True)

    @post_load
    def no_null_items(self, data, **kwargs):
        data["items"] = data["items"] or []
        return data
