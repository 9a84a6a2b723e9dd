"""Which BigCommerce webhooks the bridge needs, and how the store's hooks compare. Pure.

Used by ``bridge check`` (what is wrong) and ``bridge hooks register`` (what to create or
repair). A hook is this bridge's when its destination is ours, or when it sends our
``X-Bridge-Token`` (a hook of ours whose destination was changed, or that still points at
an older ``server.public_url``). Any other hook of the API account is left alone: it may
belong to another install sharing the account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

WEBHOOK_PATH = "/webhooks/bigcommerce"
HEADER = "X-Bridge-Token"

REFUND_CREATED = "store/order/refund/created"
# Events that make the worker look at the order again. A refund re-evaluates an order
# whose report is not sent yet: it may no longer be eligible.
ORDER_SCOPES = ("store/order/statusUpdated", "store/order/created", "store/order/updated", REFUND_CREATED)
CART_CONVERTED = "store/cart/converted"
APP_UNINSTALLED = "store/app/uninstalled"
APP_SCOPES = (APP_UNINSTALLED,)  # only an app's hooks receive these

OK = "ok"
MISSING = "missing"
INACTIVE = "inactive"
WRONG_DESTINATION = "wrong destination"
WRONG_HEADER = "wrong header"


def wanted_scopes(app: bool = False) -> tuple[str, ...]:
    """The scopes the pipeline handles. ``store/app/uninstalled`` only fires for an app's install."""
    return (*ORDER_SCOPES, CART_CONVERTED, *(APP_SCOPES if app else ()))


def hook_token(secret: str, store_hash: str, *, app: bool) -> str:
    """The ``X-Bridge-Token`` the store's hooks send: ``webhooks.secret`` for the configured store;
    for an app store, a value derived from it and the store hash.

    Every app store has its own, so a value learnt from one store (its owner can list its
    hooks) cannot speak for another store: forge its orders, cart links or its uninstall.
    """
    if not app:
        return secret
    digest = hmac.new(secret.encode(), f"bridge app store {store_hash}".encode(), hashlib.sha256).digest()
    return "bst_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def destination_for(public_url: str) -> str:
    return public_url.rstrip("/") + WEBHOOK_PATH


def destination_problem(destination: str) -> str | None:
    """Why BigCommerce would refuse to send to ``destination`` (https on port 443 only), or None."""
    parts = urlsplit(destination)
    if parts.scheme != "https" or parts.port not in (None, 443):
        return (
            "server.public_url must be https on port 443 for BigCommerce to deliver webhooks "
            f"(it is {destination.removesuffix(WEBHOOK_PATH)})."
        )
    return None


def header_value(hook: dict) -> str | None:
    """The hook's ``X-Bridge-Token`` (header names are case-insensitive)."""
    headers = hook.get("headers")
    if not isinstance(headers, dict):
        return None
    return next((value for name, value in headers.items() if isinstance(name, str) and name.lower() == HEADER.lower()), None)


def has_header(hook: dict, secret: str) -> bool:
    value = header_value(hook)
    return isinstance(value, str) and hmac.compare_digest(value.encode(), secret.encode())


def is_ours(hook: dict, destination: str, secret: str) -> bool:
    return hook.get("destination") == destination or has_header(hook, secret)


@dataclass(frozen=True)
class HookState:
    """One wanted scope: the hook serving it (None when missing) and what is wrong with it."""

    scope: str
    hook: dict | None
    problems: tuple[str, ...]  # empty when fine; else MISSING, or some of WRONG_DESTINATION, WRONG_HEADER, INACTIVE

    @property
    def status(self) -> str:
        return self.problems[0] if self.problems else OK

    @property
    def ok(self) -> bool:
        return not self.problems


def compare(wanted: tuple[str, ...] | list[str], destination: str, secret: str, hooks: list[dict]) -> list[HookState]:
    """Per wanted scope, in order: ok, missing, or the hook of ours to repair and what is wrong.

    When several hooks of ours serve a scope, the one needing the least repair is chosen:
    our destination first, then active, then the right header.
    """
    states = []
    for scope in wanted:
        candidates = [hook for hook in hooks if hook.get("scope") == scope and is_ours(hook, destination, secret)]
        if not candidates:
            states.append(HookState(scope, None, (MISSING,)))
            continue
        best = min(
            candidates,
            key=lambda hook: (
                hook.get("destination") != destination,
                hook.get("is_active") is not True,
                not has_header(hook, secret),
                _id(hook),
            ),
        )
        problems = []
        if best.get("destination") != destination:
            problems.append(WRONG_DESTINATION)
        if not has_header(best, secret):
            problems.append(WRONG_HEADER)
        if best.get("is_active") is not True:
            problems.append(INACTIVE)
        states.append(HookState(scope, best, tuple(problems)))
    return states


def repair(state: HookState, destination: str, secret: str) -> dict:
    """The ``PUT /v3/hooks/{id}`` body that fixes ``state`` (empty when nothing is wrong)."""
    changes: dict = {}
    if WRONG_DESTINATION in state.problems:
        changes["destination"] = destination
    if WRONG_HEADER in state.problems:
        current = (state.hook or {}).get("headers")
        kept = {name: value for name, value in (current if isinstance(current, dict) else {}).items() if name.lower() != HEADER.lower()}
        changes["headers"] = {**kept, HEADER: secret}
    if INACTIVE in state.problems:
        changes["is_active"] = True
    return changes


def _id(hook: dict) -> int:
    value = hook.get("id")
    return value if isinstance(value, int) else 0
