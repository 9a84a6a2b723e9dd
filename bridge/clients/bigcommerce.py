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
- a 204 (empty list) comes back as a truthy empty object: read as ``[]``;
- a 200 that is not JSON crashes inside it (``e.message``): checked first;
- its resource classes drop keys that clash with method names (``products``,
  ``coupons``…): they are not used; raw JSON goes through the schemas below, which
  parse every money string as Decimal.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import requests
from bigcommerce import exception as bc_exception
from bigcommerce.connection import Connection, OAuthConnection
from marshmallow import Schema, ValidationError, fields, post_load, pre_load

from bridge.core.payload import text
from bridge.core.retry import Failure, parse_http_date
from bridge.schemas import Lenient

log = logging.getLogger(__name__)

PAGE_SIZE = 250  # the V2 maximum: one call for all but the largest orders


class BigCommerceError(Exception):
    """A BigCommerce call that did not succeed. Never carries credentials."""

    def __init__(self, message: str, *, status: int | None = None, failure: Failure | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.failure = failure
        self.retry_after = retry_after


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


def _short(content: bytes | str | None, limit: int = 300) -> str:
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    content = (content or "").strip().replace("\n", " ")
    return content[:limit] + ("…" if len(content) > limit else "")


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
    ):
        self.store_hash = store_hash
        self._v2 = _Connection(
            api_url=api_url, store_hash=store_hash, access_token=access_token, client_id=client_id, timeout=timeout, version="v2"
        )
        self.calls = 0

    def _get(self, resource: str, **query):
        """One GET; returns parsed JSON, or None for 204."""
        self.calls += 1
        try:
            result = self._v2.get(resource, **query)
        except bc_exception.RateLimitingException as error:
            raise BigCommerceError(
                f"BigCommerce rate limit reached on {resource}", status=429, retry_after=_reset_seconds(error.response.headers)
            ) from None
        except bc_exception.HttpException as error:
            raise BigCommerceError(
                f"BigCommerce answered {error.status_code} to {resource}: {_short(error.content)}",
                status=error.status_code,
            ) from None
        except requests.Timeout:
            raise BigCommerceError(f"BigCommerce did not answer {resource} in time", failure=Failure.TIMEOUT) from None
        except requests.RequestException as error:
            raise BigCommerceError(
                f"Could not reach BigCommerce for {resource}: {type(error).__name__}", failure=Failure.CONNECTION
            ) from None
        if self._v2._last_response is not None and self._v2._last_response.status_code == 204:
            return None
        return result

    def _load(self, schema: Schema, data, what: str, many: bool = False):
        try:
            return schema.load(data, many=many)
        except ValidationError as error:
            raise BigCommerceError(
                f"BigCommerce sent {what} we cannot read: {_short(str(error.messages))}", failure=Failure.BAD_RESPONSE
            ) from None

    def _get_list(self, resource: str, what: str, schema: Schema) -> list[dict]:
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
            # A short page is not proof of the last one: only an empty page or a 204 is.
            page += 1
        return items

    def close(self) -> None:
        self._v2._session.close()

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

    def fetch_order_products(self, order_id: int) -> list[dict]:
        return self._get_list(f"orders/{order_id}/products", f"the lines of order {order_id}", OrderProductSchema())

    def fetch_order_coupons(self, order_id: int) -> list[dict]:
        return self._get_list(f"orders/{order_id}/coupons", f"the coupons of order {order_id}", OrderCouponSchema())
