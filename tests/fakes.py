"""The outside world for the tests: thin adapters over the sandbox servers the demo uses
(``bridge/sandbox``), served over real HTTP on 127.0.0.1.

The sandbox checks credentials the way the real services do, answers in their shapes (money
as strings, 204 for empty lists, 404 for unknown orders, rate-limit headers) and records every
request, so tests assert on what actually crossed the wire. The adapters only add the short
names the tests were written with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from werkzeug import Request, Response

from bridge.sandbox._server import LocalServer, json_response
from bridge.sandbox.bigcommerce import MAX_PAGE_SIZE, SandboxBigCommerce, Token
from bridge.sandbox.refersion import SandboxRefersion

FIXTURES = Path(__file__).parent / "fixtures"
PAID_PATH = r"^/tracker/orders/paid$"

__all__ = ["FIXTURES", "FakeBigCommerce", "FakeRefersion", "Scripted", "json_response", "load_fixture"]


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / "orders" / f"{name}.json").read_text())


@dataclass
class Scripted:
    """A canned answer served instead of the normal one, ``times`` times."""

    match: Callable[[Request], bool]
    respond: Callable[[Request], Response]
    times: int = 1


class _Script:
    """``server.script.append(Scripted(...))``: queued as the sandbox's ``respond_next``."""

    def __init__(self, server: LocalServer):
        self._server = server

    def append(self, scripted: Scripted) -> None:
        self._server.respond_next(scripted.respond, times=scripted.times, match=scripted.match)


class FakeBigCommerce(SandboxBigCommerce):
    """The sandbox's BigCommerce holding one store, with the tests' short names."""

    def __init__(self, store_hash: str = "abc123", access_token: str = "bc-token-0123456789abcdef"):
        self.store_hash = store_hash
        self._access_token = self._initial_token = access_token
        super().__init__(store_hash, access_token)

    def reset(self) -> None:
        super().reset()
        self._access_token = self._initial_token

    @property
    def access_token(self) -> str:
        return self._access_token

    @access_token.setter
    def access_token(self, token: str) -> None:
        """Rotate the store's token: the old one stops working."""
        with self._lock:
            tokens = self._store(self.store_hash).tokens
            tokens[token] = tokens.pop(self._access_token, None) or Token(self.client_id, None)
            self._access_token = token

    @property
    def orders(self) -> dict[int, dict]:
        """The store's orders, live (tests read and change them in place)."""
        return self._store(self.store_hash).orders

    @property
    def page_cap(self) -> int | None:
        return None if self.max_page_size == MAX_PAGE_SIZE else self.max_page_size

    @page_cap.setter
    def page_cap(self, cap: int | None) -> None:
        self.max_page_size = MAX_PAGE_SIZE if cap is None else cap

    @property
    def script(self) -> _Script:
        return _Script(self)

    def add(self, fixture: dict, **order_changes) -> int:
        """Serve a fixture's order (with ``order_changes`` applied); returns its id."""
        return self.add_fixture(fixture, **order_changes)

    def update(self, order_id: int, **changes) -> None:
        self.update_order(order_id, **changes)

    def calls(self, order_id: int | None = None) -> int:  # type: ignore[override]
        """How many requests reached the server, or reached ``/orders/{order_id}`` and below."""
        if order_id is None:
            return len(self.requests)
        return len(self.recorded(rf"/orders/{order_id}(/|$)"))

    def recorded(self, path: str | None = None, method: str | None = None):
        """The sandbox's ``calls``: recorded requests whose path matches the regex ``path``."""
        return LocalServer.calls(self, path, method)


class FakeRefersion(SandboxRefersion):
    """The sandbox's Refersion, with the tests' short names."""

    def __init__(self, public_key: str = "pub_test_4a2b", secret_key: str = "sec_test_9f8e7d6c5b4a"):
        super().__init__(public_key, secret_key)

    @property
    def script(self) -> _Script:
        return _Script(self)

    @property
    def attempts(self) -> list[str | None]:  # type: ignore[override]
        """The order id of every POST to the paid-order webhook, answered or not."""
        return [r.json.get("order_id") if isinstance(r.json, dict) else None for r in self.calls(PAID_PATH, "POST")]

    def answer_next(self, status: int, *, times: int = 1, headers: dict | None = None, body: str | None = None, delay: float = 0.0) -> None:
        self.fail_next(status, times=times, headers=headers, body=body, delay=delay)
