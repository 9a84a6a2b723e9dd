"""The operator's chat: one POST of ``{"text": ...}`` to a Slack-compatible incoming webhook.

Only transport lives here; what an answer means is decided in ``core/retry.py``. The URL
holds the webhook's token: it never appears in a reply, a log line or an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from bridge import logs
from bridge.clients.refersion import Reply
from bridge.core.retry import Failure

TIMEOUT_SECONDS = 10.0  # Slack answers in well under a second; a slow receiver is retried later
MIN_SECRET_PART = 8  # shorter path parts ("/", "/hook") are not worth hiding and would mangle answers
RESPONSE_KEEP = 500  # characters of the receiver's answer kept (Slack's are one word: "invalid_token")


@dataclass(frozen=True)
class AlertReply(Reply):
    """What the alert receiver answered (Reply's fields, told as the receiver's, not Refersion's)."""

    @property
    def summary(self) -> str:
        if self.failure is Failure.TIMEOUT:
            return "the alert webhook did not answer in time"
        if self.failure is not None:
            return f"could not reach the alert webhook ({self.body})" if self.body else "could not reach the alert webhook"
        answered = f"the alert webhook answered HTTP {self.status}"
        return f"{answered}: {self.body[:200]}" if self.body else answered


def _secret_parts(url: str) -> list[str]:
    """The URL, its path and its last segment (Slack's token), longest first."""
    path = urlsplit(url).path
    token = path.rstrip("/").rsplit("/", 1)[-1]
    return [part for part in (url, path, token) if len(part) >= MIN_SECRET_PART]


def post_alert(url: str, body: str, *, timeout: float = TIMEOUT_SECONDS) -> AlertReply:
    """POST one alert (``body`` is the JSON ``{"text": ...}``); never following a redirect."""
    secrets = _secret_parts(url)
    for secret in secrets:
        logs.redact(secret)  # a library's log line may name the path alone
    try:
        response = requests.post(
            url, data=body.encode("utf-8"), headers={"Content-Type": "application/json"}, timeout=timeout, allow_redirects=False
        )
    except requests.Timeout:
        return AlertReply(None, failure=Failure.TIMEOUT)
    except requests.RequestException as error:
        # Only the error's class: its message names the URL, and the URL is a secret.
        return AlertReply(None, body=type(error).__name__, failure=Failure.CONNECTION)
    text = response.text
    for secret in secrets:
        text = text.replace(secret, logs.REDACTED)
    text = text[:RESPONSE_KEEP]
    return AlertReply(response.status_code, body=text, retry_after=response.headers.get("Retry-After"))
