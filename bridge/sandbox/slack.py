"""A Slack-compatible incoming webhook on 127.0.0.1, the receiver of the bridge's alerts.

``webhook_url`` = ``{url}/services/T0SANDBOX/B0SANDBOX/{token}``. As Slack does, it answers
200 ``ok`` to a JSON body with a non-empty ``text``, 400 ``invalid_payload`` / ``no_text``
otherwise, 403 ``invalid_token`` for another token and 404 ``no_service`` for another path.
Accepted messages are kept in ``messages``.
"""

from __future__ import annotations

import json
import threading

from werkzeug import Request, Response

from bridge.sandbox._server import LocalServer

TOKEN = "sandboxAlertToken0123456789abcd"  # like Slack's, the secret part of the URL
PATH_PREFIX = "/services/T0SANDBOX/B0SANDBOX/"


class SandboxSlack(LocalServer):
    """Records every alert it accepts; ``fail_next`` and friends inject failures as on the other servers."""

    def __init__(self, token: str = TOKEN, *, latency: float = 0.0):
        super().__init__(latency=latency)
        self.token = token
        self.messages: list[str] = []
        self._messages_lock = threading.Lock()

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{PATH_PREFIX}{self.token}"

    def reset(self) -> None:
        super().reset()
        with self._messages_lock:
            self.messages = []

    def default_error_body(self, status: int) -> str:
        return {400: "invalid_payload", 403: "invalid_token", 404: "no_service"}.get(status, "internal_error")

    def dispatch(self, request: Request) -> Response:
        if not request.path.startswith(PATH_PREFIX):
            return _text("no_service", 404)
        if request.method != "POST":
            return _text("invalid_method", 405)
        if request.path.removeprefix(PATH_PREFIX) != self.token:
            return _text("invalid_token", 403)
        try:
            body = json.loads(request.get_data(cache=True) or b"null")
        except ValueError:
            return _text("invalid_payload", 400)
        if not isinstance(body, dict):
            return _text("invalid_payload", 400)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _text("no_text", 400)
        with self._messages_lock:
            self.messages.append(text)
        return _text("ok", 200)


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, content_type="text/plain")
