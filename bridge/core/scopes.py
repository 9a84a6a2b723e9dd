"""The OAuth scopes the bridge asks a store for when installed as an app, and why. Pure.

BigCommerce names each scope twice: ``…_read_only`` and the modify scope, which covers the
reads too. A need is met by either, unless it needs to modify. ``REQUIRED`` must all be
granted for an install to be kept; ``RECOMMENDED`` ones turn on features that are
otherwise off, so an install without them is kept and the page says what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

ORDERS_READ, ORDERS_MODIFY = "store_v2_orders_read_only", "store_v2_orders"
TRANSACTIONS_READ, TRANSACTIONS_MODIFY = "store_v2_transactions_read_only", "store_v2_transactions"
INFORMATION_READ, INFORMATION_MODIFY = "store_v2_information_read_only", "store_v2_information"
MARKETING_READ, MARKETING_MODIFY = "store_v2_marketing_read_only", "store_v2_marketing"

SCOPE_NAMES = {
    ORDERS_READ: "Orders: read-only",
    ORDERS_MODIFY: "Orders: modify",
    TRANSACTIONS_READ: "Order Transactions: read-only",
    TRANSACTIONS_MODIFY: "Order Transactions: modify",
    INFORMATION_READ: "Information & Settings: read-only",
    INFORMATION_MODIFY: "Information & Settings: modify",
    MARKETING_READ: "Marketing: read-only",
    MARKETING_MODIFY: "Marketing: modify",
}


@dataclass(frozen=True)
class Need:
    """One scope the bridge asks for: the one to request, what also satisfies it, and why."""

    scope: str  # the scope to tick in the Developer Portal
    why: str
    also: tuple[str, ...] = ()  # broader scopes that cover it

    @property
    def name(self) -> str:
        return SCOPE_NAMES.get(self.scope, self.scope)

    def met_by(self, granted: frozenset[str] | set[str]) -> bool:
        return self.scope in granted or any(scope in granted for scope in self.also)


REQUIRED = (Need(ORDERS_READ, "the worker reads every order a webhook names, with its lines and coupons", also=(ORDERS_MODIFY,)),)
RECOMMENDED = (
    Need(TRANSACTIONS_READ, "refunds are read to report cancellations to Refersion", also=(TRANSACTIONS_MODIFY,)),
    Need(INFORMATION_READ, "the store's information (/v2/store) checks the connection", also=(INFORMATION_MODIFY,)),
    Need(MARKETING_MODIFY, "Refersion's coupon triggers create coupon codes in the store"),
)


def missing(granted: str | list[str] | set[str] | frozenset[str], needs: tuple[Need, ...] = REQUIRED) -> list[Need]:
    """The needs ``granted`` (a space-separated string or a collection) does not meet, in order."""
    scopes = frozenset(granted.split()) if isinstance(granted, str) else frozenset(granted)
    return [need for need in needs if not need.met_by(scopes)]
