"""``POST /webhooks/bigcommerce``: authenticate, validate, store, acknowledge. Nothing else.

The order is not fetched here: BigCommerce wants a fast 2xx, and a slow or failing
answer gets the whole domain blocklisted. The worker does the rest.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
import re
import sqlite3
import time

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from marshmallow import ValidationError, fields, validate
from werkzeug.exceptions import RequestEntityTooLarge

from bridge.schemas import Lenient
from bridge.storage.group_commit import WriteTimeout
from bridge.storage.inbox import HANDLED_SCOPES, Envelope
from bridge.web.auth import content_security_policy
from bridge.web.database import REQUEST_BUSY_TIMEOUT, intake, intake_client
from bridge.web.intake import IntakeFailed, IntakeRequest, Stored, WriterUnreachable, store_event, token_valid
from bridge.web.webhook_schemas import MAX_ID, load_data

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)

MAX_BODY_BYTES = 64 * 1024
SIGNATURE_TOLERANCE = 300  # seconds either way, as Standard Webhooks prescribes
MAX_NESTING = 32  # a webhook is three levels deep; far deeper ones would only exhaust the stack later
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # \ud800-\udfff, as JSON spells a surrogate


class StoreId(fields.Field):
    """``store_id`` is documented as a string; very old payloads sent a number."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("Not a string or a number.")
        return str(value)


class EnvelopeSchema(Lenient):
    scope = fields.String(required=True, validate=validate.Length(min=1, max=200))
    producer = fields.String(
        required=True,
        validate=validate.Regexp(r"^stores/[A-Za-z0-9]{1,64}$", error="Must look like stores/<store_hash>."),
    )
    store_id = StoreId(load_default=None, allow_none=True)
    hash = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=128))
    created_at = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0, max=MAX_ID))
    data = fields.Dict(required=True)


ENVELOPE_SCHEMA = EnvelopeSchema()  # built once: a schema's construction costs more than a load


def parse_envelope(payload) -> Envelope:
    """Validate a callback body; raises ``ValidationError`` naming the bad fields."""
    if not isinstance(payload, dict):
        raise ValidationError("The body must be a JSON object.")
    envelope = ENVELOPE_SCHEMA.load(payload)
    try:
        found = load_data(envelope["scope"], envelope["data"])
    except ValidationError as error:
        raise ValidationError({"data": error.messages}) from None
    return Envelope(
        scope=envelope["scope"],
        store_hash=envelope["producer"].split("/", 1)[1],
        data=envelope["data"],
        hash=envelope["hash"],
        created_at=envelope["created_at"],
        order_id=found.get("order_id"),
        cart_id=found.get("cart_id"),
        refund_id=found.get("refund_id"),
    )


def _error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def _signature_valid(secret: str | None, body: bytes, now: float) -> bool:
    """Standard Webhooks: HMAC-SHA256 of ``{id}.{timestamp}.{body}`` keyed with the client secret."""
    message_id = request.headers.get("webhook-id", "")
    timestamp = request.headers.get("webhook-timestamp", "")
    signatures = request.headers.get("webhook-signature", "")
    if not (secret and message_id and signatures and re.fullmatch(r"[0-9]{1,12}", timestamp)):
        return False
    if abs(now - int(timestamp)) > SIGNATURE_TOLERANCE:
        return False
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
    valid = False
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            valid = True
    return valid


def _unauthenticated() -> Response:
    return _error(401, "Missing or wrong X-Bridge-Token header (or webhook signature).")


def _read_body() -> bytes | None:
    """The raw body, or None when it is over the limit (chunked bodies included)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return None  # refused unread
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        return None
    # Werkzeug stops a streamed body at MAX_CONTENT_LENGTH without a word; that
    # limit is one byte over ours, so a body that reaches it is too long.
    return None if len(body) > MAX_BODY_BYTES else body


@bp.post("/webhooks/bigcommerce")
def receive() -> Response:
    settings = current_app.config["BRIDGE_SETTINGS"]
    # Three ways to be authentic: X-Bridge-Token equal to webhooks.secret (the configured
    # store's hooks), equal to the store's own derived token (an app store's hooks: known only
    # once the body names the store), or a valid signature (a secret being rotated may leave a
    # stale token beside it). Without any of them the body is not read.
    token = request.headers.get("X-Bridge-Token")
    shared_token = token_valid(settings.webhooks.secret, token)
    if token is None and "webhook-signature" not in request.headers:
        return _unauthenticated()
    body = _read_body()
    if body is None:
        return _error(413, f"The body is over {MAX_BODY_BYTES // 1024} KiB.")
    signed = not shared_token and _signature_valid(settings.bigcommerce.client_secret, body, time.time())
    if not (shared_token or signed or token):
        return _unauthenticated()
    store_token = token if not (shared_token or signed) else None  # to check against the store the body names
    envelope = _envelope(body)
    if isinstance(envelope, Response):
        return _unauthenticated() if store_token is not None else envelope  # no word on the body before authentication

    try:
        stored = _store(current_app, envelope, body, token, signed)
    except StoreUnavailable:
        return _error(503, UNAVAILABLE)
    if stored is None:
        return _unauthenticated()
    _log_received(*stored, envelope)
    return Response(status=200)


UNAVAILABLE = "The bridge cannot store events right now; retry later."
WRITE_MARGIN_SECONDS = 1.0


class StoreUnavailable(Exception):
    """The event could not be stored (the database failed or stayed locked): nothing is acknowledged."""


def _store(app: Flask, envelope: Envelope, body: bytes, token: str | None, signed: bool) -> Stored | None:
    """Store an event: (event id or None for a re-delivery, whether the store is known), or None
    when the token is not one the named store's hooks send.

    Through the deployment's intake writer when ``bridge web`` runs one (``web/intake.py``),
    else, or when it cannot be reached, through this process's own group commit.
    """
    settings, stores = app.config["BRIDGE_SETTINGS"], app.config["BRIDGE_STORES"]
    # The time the request came in, read on its own thread (a frozen clock in tests reaches no other thread).
    incoming = IntakeRequest(envelope=envelope, body=body.decode("utf-8"), token=token, signed=signed, received_at=time.time())
    # The writer gives up on a locked database after REQUEST_BUSY_TIMEOUT; the request waits
    # a little longer, for its batch's answer, queued behind another batch at most.
    timeout = REQUEST_BUSY_TIMEOUT + WRITE_MARGIN_SECONDS
    try:
        client = intake_client(app)
        if client is not None:
            with contextlib.suppress(WriterUnreachable):
                return client.store(incoming, timeout=timeout)
        return intake(app).run(lambda db: store_event(db, stores, settings.webhooks.secret, incoming), timeout=timeout)
    except WriteTimeout as error:
        log.warning("Could not store a webhook event: %s (the database is busy)", error)
        raise StoreUnavailable from error
    except IntakeFailed as error:
        log.warning("Could not store a webhook event: %s", error)
        raise StoreUnavailable from error
    except (sqlite3.Error, OSError) as error:
        log.exception("Could not store a webhook event")
        # Not the sender's fault and nothing was stored: BigCommerce will retry.
        raise StoreUnavailable from error


def _envelope(body: bytes) -> Envelope | Response:
    """The body as a validated webhook, or the 4xx answer saying what is wrong with it."""
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        return _error(415, "The body must be JSON (Content-Type: application/json).")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _error(400, "The body is not valid JSON.")
    except RecursionError:  # only nesting exhausts the parser's stack, however deep the caller's stack is
        return _error(400, f"The body nests deeper than {MAX_NESTING} levels.")
    if not _shallow(payload):
        return _error(400, f"The body nests deeper than {MAX_NESTING} levels.")
    if not _encodable(payload):
        return _error(400, "The body holds a \\u escape that is not a Unicode character (a lone surrogate).")
    try:
        return parse_envelope(payload)
    except ValidationError as error:
        return _error(400, f"The body is not a BigCommerce webhook: {_describe(error.messages)}")


def _log_received(event_id: int | None, known_store: bool, envelope: Envelope) -> None:
    """One line per accepted request: what the event is and what became of it. At DEBUG when
    all is well (the worker logs what it does with each order); ignored events at INFO."""
    # The scope is the sender's text: escaped, so that it cannot start a line of its own.
    what = f"{envelope.scope.encode('unicode_escape').decode('ascii')} for store {envelope.store_hash}"
    if envelope.order_id is not None:
        what += f", order {envelope.order_id}"
    if event_id is None:
        log.debug("Re-delivery of %s ignored (already stored)", what)
    elif not known_store:
        log.info("Event %s ignored: %s (unknown store: no credentials for it)", event_id, what)
    elif envelope.scope not in HANDLED_SCOPES:
        log.info("Event %s ignored: %s (scope not handled)", event_id, what)
    else:
        log.debug("Event %s stored: %s", event_id, what)


def _children(value) -> list:
    if isinstance(value, dict):
        return list(value.values())
    return value if isinstance(value, list) else []


def _shallow(payload) -> bool:
    """At most MAX_NESTING levels deep; checked level by level, before anything recurses."""
    level = [payload]
    for _ in range(MAX_NESTING):
        level = [child for value in level for child in _children(value)]
        if not level:
            return True
    return False


def _encodable(payload) -> bool:
    """JSON may spell lone surrogates (\\ud800), which no UTF-8 text, SQLite's included, can hold."""
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe(messages, prefix: str = "") -> str:
    if isinstance(messages, dict):
        parts = []
        for key, value in messages.items():
            name = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            parts.append(_describe(value, name))
        return "; ".join(parts)
    if isinstance(messages, list):
        text = " ".join(str(message) for message in messages)
        return f"{prefix}: {text}" if prefix else text
    return f"{prefix}: {messages}" if prefix else str(messages)


class FastIntake:
    """WSGI middleware: an authentic, well-formed webhook is stored and answered without Flask.

    Nearly every request to the bridge is a valid webhook, and Flask's machinery around it
    (request and app contexts, the session, the CSRF check, the security headers of pages)
    costs more than the webhook's own work. Anything this path does not expect (another route,
    a signature instead of a token, a body that is chunked, oversized, not JSON or not a
    webhook, a token the store does not send) goes to the Flask view unchanged, which
    answers it as before; a request is never stored by both.
    """

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        # The headers every answer of the bridge carries (auth.security_headers), worked out once.
        self.headers = [
            ("Content-Security-Policy", content_security_policy(app.config["BRIDGE_SETTINGS"])),
            ("Referrer-Policy", "same-origin"),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-store"),
        ]

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/webhooks/bigcommerce" or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        token = environ.get("HTTP_X_BRIDGE_TOKEN")
        length = environ.get("CONTENT_LENGTH") or ""
        content_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if (
            token is None
            or "HTTP_WEBHOOK_SIGNATURE" in environ
            or not length.isdigit()
            or int(length) > MAX_BODY_BYTES
            or (content_type != "application/json" and not content_type.endswith("+json"))
        ):
            return self.wsgi_app(environ, start_response)
        try:
            body = environ["wsgi.input"].read(int(length))
        except Exception:  # the server's reader raises its own errors when a client stalls or hangs up mid-body
            return self._error(start_response, "400 BAD REQUEST", "The body did not arrive whole (the connection stalled or closed).")
        envelope = _fast_envelope(body) if len(body) == int(length) else None
        if envelope is None:
            environ["wsgi.input"] = io.BytesIO(body)  # the view reads the same bytes and says what is wrong
            return self.wsgi_app(environ, start_response)
        try:
            stored = _store(self.app, envelope, body, token, signed=False)
        except StoreUnavailable:
            return self._error(start_response, "503 SERVICE UNAVAILABLE", UNAVAILABLE)
        if stored is None:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.wsgi_app(environ, start_response)
        _log_received(*stored, envelope)
        start_response("200 OK", [("Content-Length", "0"), *self.headers])
        return [b""]

    def _error(self, start_response, status: str, message: str) -> list[bytes]:
        """The JSON error answer the Flask view would give."""
        payload = json.dumps({"error": message}).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *self.headers])
        return [payload]


def _fast_envelope(body: bytes) -> Envelope | None:
    """The body as a webhook, or None for anything the Flask view must answer."""
    try:
        payload = json.loads(body.decode("utf-8"))
        # Cheap looks at the bytes first: a body with fewer brackets than the nesting limit cannot
        # nest that deep, and one without a \\u escape of a surrogate cannot spell a lone one.
        shallow = body.count(b"{") + body.count(b"[") <= MAX_NESTING or _shallow(payload)
        encodable = not SURROGATE_ESCAPE.search(body) or _encodable(payload)
        if shallow and encodable:
            return parse_envelope(payload)
    except (UnicodeDecodeError, ValueError, RecursionError, ValidationError):
        pass
    return None
