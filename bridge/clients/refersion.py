"""Refersion: posting paid orders to its inbound webhook.

Only transport lives here; what an answer means is decided in ``bridge.retry``.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
import simplejson

from bridge.config import RefersionSettings
from bridge.core.retry import Failure

RESPONSE_KEEP = 2000  # characters of Refersion's answer kept for the status page


def dumps(payload: dict) -> str:
    """JSON with Decimal money written as exact numbers, never floats or strings."""
    return simplejson.dumps(payload, use_decimal=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Reply:
    """What Refersion answered, or how the call failed without an answer."""

    status: int | None
    body: str = ""
    retry_after: str | None = None
    failure: Failure | None = None

    @property
    def summary(self) -> str:
        if self.failure is Failure.TIMEOUT:
            return "Refersion did not answer in time"
        if self.failure is not None:
            return f"could not reach Refersion ({self.body})" if self.body else "could not reach Refersion"
        return f"HTTP {self.status}: {self.body[:200]}" if self.body else f"HTTP {self.status}"


class RefersionClient:
    """Talks to Refersion with one store's API key pair."""

    @classmethod
    def for_keys(cls, settings: RefersionSettings, public_key: str, secret_key: str) -> RefersionClient:
        """A client of the configured Refersion endpoints with this key pair (the config's or a store's own)."""
        return cls(
            orders_url=settings.orders_url,
            api_url=settings.api_url,
            public_key=public_key,
            secret_key=secret_key,
            timeout=settings.timeout,
        )

    def __init__(self, *, orders_url: str, public_key: str, secret_key: str, timeout: float = 20.0, api_url: str | None = None):
        self.orders_url = orders_url
        self.api_url = api_url.rstrip("/") if api_url else None
        self._secret_key = secret_key
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers.update(
            {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Refersion-Public-Key": public_key,
                "Refersion-Secret-Key": secret_key,
            }
        )

    def _scrub(self, text: str) -> str:
        # Defence in depth: an echo of our own key must never reach the database or a page.
        return text.replace(self._secret_key, "[redacted]") if self._secret_key else text

    def _post(self, url: str, body: str) -> Reply:
        """POST a JSON body with the key pair; never following a redirect (the secret key would go along)."""
        try:
            response = self._session.post(url, data=body.encode("utf-8"), timeout=self._timeout, allow_redirects=False)
        except requests.Timeout:
            return Reply(None, failure=Failure.TIMEOUT)
        except requests.RequestException as error:
            return Reply(None, body=type(error).__name__, failure=Failure.CONNECTION)
        text = self._scrub(response.text)[:RESPONSE_KEEP]
        return Reply(response.status_code, body=text, retry_after=response.headers.get("Retry-After"))

    def post_paid_order(self, body: str) -> Reply:
        """POST one paid order (already JSON) and report what happened."""
        return self._post(self.orders_url, body)

    def list_affiliates(self, limit: int = 1) -> Reply:
        """``POST {api_url}/affiliate/list``: reads, changes nothing; a probe of the key pair (200 works, 401 refused)."""
        if not self.api_url:
            raise ValueError("list_affiliates needs the REST API's api_url")
        return self._post(f"{self.api_url}/affiliate/list", dumps({"limit": limit, "page": 1}))

    def cancel_conversion(self, body: str) -> Reply:
        """``POST {api_url}/conversion/cancel`` with one cancellation (already JSON): ``order_id`` and the items taken back."""
        if not self.api_url:
            raise ValueError("cancel_conversion needs the REST API's api_url")
        return self._post(f"{self.api_url}/conversion/cancel", body)

    def close(self) -> None:
        self._session.close()
