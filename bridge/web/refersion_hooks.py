"""``POST /webhooks/refersion``: Refersion's outbound webhooks (its "New Conversion Trigger" topic).

Verify ``Refersion-Signature`` (base64 HMAC-SHA256 of the raw body, keyed with
``refersion.webhook_secret``), store the event, queue a COUPON trigger's code for the worker,
answer 200. BigCommerce is never called here: the worker creates the code.

Which store: with one store served, that store; with several, the URL given to Refersion
names it (``?store=HASH``). The signature does not cover the URL: a body (and a trigger id)
is taken once per deployment, so a signed body replayed with another ``?store=`` is ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import sqlite3
import time

from flask import Blueprint, Response, current_app, request
from marshmallow import ValidationError, fields, pre_load, validate

from bridge.core.coupons import TRIGGER_TYPES, code_problem, ignored_because, is_trigger_topic
from bridge.schemas import STORE_HASH, Lenient
from bridge.storage import refersion_events
from bridge.storage.stores import Store
from bridge.web.database import get_db
from bridge.web.webhooks import MAX_BODY_BYTES, MAX_NESTING, _describe, _encodable, _error, _read_body, _shallow

log = logging.getLogger(__name__)

bp = Blueprint("refersion_hooks", __name__)

SIGNATURE_HEADER = "Refersion-Signature"
TOPIC_HEADER = "Refersion-Topic"
MAX_TOPIC_LENGTH = 100
SETUP = "Refersion › Account › Settings › Webhooks"


class Identifier(fields.Field):
    """An id Refersion may send as a number or as a string of digits; kept as text."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValidationError("Not a number or a string of digits.")
        text = str(value).strip()
        if not text.isdigit() or len(text) > 19:
            raise ValidationError("Not a number or a string of digits.")
        return text


class TriggerSchema(Lenient):
    """The "New Conversion Trigger" payload: ``{id, affiliate_id, trigger, type}``."""

    id = Identifier(required=True)
    affiliate_id = Identifier(load_default=None, allow_none=True)
    trigger = fields.String(required=True, validate=validate.Length(min=1, max=255, error="Must be 1 to 255 characters."))
    type = fields.String(required=True, validate=validate.OneOf(TRIGGER_TYPES, error="Must be one of: {choices}."))

    @pre_load
    def tidy(self, data, **kwargs):
        if isinstance(data, dict):
            data = dict(data)
            for name in ("trigger", "type"):
                if isinstance(data.get(name), str):
                    data[name] = data[name].strip()
            if isinstance(data.get("type"), str):
                data["type"] = data["type"].upper()
        return data


def signature(secret: str, body: bytes) -> str:
    """Refersion's ``Refersion-Signature`` of ``body``: base64(HMAC-SHA256(secret, raw body))."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode("ascii")


def _signature_valid(secret: str, body: bytes, sent: str | None) -> bool:
    """``sent`` is the body's signature, compared in constant time."""
    if not sent:
        return False
    return hmac.compare_digest(sent.strip().encode("ascii", "replace"), signature(secret, body).encode("ascii"))


def _chosen_store() -> Store | Response:
    """The store this webhook is for, or the 4xx answer saying how to name it in the URL."""
    registry = current_app.config["BRIDGE_STORES"]
    named = request.args.get("store")
    if named is not None:
        try:
            validate.Length(min=1)(named)
            STORE_HASH(named)
        except ValidationError:
            return _error(400, f"?store= must be a store hash (letters and digits, as in ?store=abc123); fix the URL in {SETUP}.")
        store = registry.get(get_db(), named)
        if store is None:
            return _error(400, f"The bridge does not serve store {named}: fix ?store= in the webhook URL in {SETUP}.")
        return store
    served = registry.all(get_db())
    if len(served) == 1:
        return served[0]
    if not served:
        return _error(400, "The bridge serves no store yet: connect a store first, then send Refersion's webhooks to it.")
    return _error(
        400,
        f"The bridge serves several stores: add ?store=<store hash> to the webhook URL in {SETUP} "
        f"(one of: {', '.join(store.store_hash for store in served)}).",
    )


def _payload(body: bytes) -> dict | Response:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _error(400, "The body is not valid JSON.")
    except RecursionError:
        return _error(400, f"The body nests deeper than {MAX_NESTING} levels.")
    if not _shallow(payload):
        return _error(400, f"The body nests deeper than {MAX_NESTING} levels.")
    if not _encodable(payload):
        return _error(400, "The body holds a \\u escape that is not a Unicode character (a lone surrogate).")
    if not isinstance(payload, dict):
        return _error(400, "The body must be a JSON object.")
    return payload


@bp.post("/webhooks/refersion")
def receive() -> Response:
    secret = current_app.config["BRIDGE_SETTINGS"].refersion.webhook_secret
    if not secret:
        return _error(404, "Refersion webhooks are not received here: set refersion.webhook_secret to turn them on.")
    body = _read_body()
    if body is None:
        return _error(413, f"The body is over {MAX_BODY_BYTES // 1024} KiB.")
    if not _signature_valid(secret, body, request.headers.get(SIGNATURE_HEADER)):
        return _error(401, f"Missing or wrong {SIGNATURE_HEADER} header: check refersion.webhook_secret against {SETUP}.")
    payload = _payload(body)
    if isinstance(payload, Response):
        return payload
    store = _chosen_store()
    if isinstance(store, Response):
        return store
    topic = request.headers.get(TOPIC_HEADER, "").strip()[:MAX_TOPIC_LENGTH]
    trigger = None
    if is_trigger_topic(topic) if topic else {"trigger", "type"} <= payload.keys():
        try:
            found = TriggerSchema().load(payload)
        except ValidationError as error:
            return _error(400, f"The body is not a Refersion conversion trigger: {_describe(error.messages)}")
        trigger = refersion_events.Trigger(found["id"], found["affiliate_id"], found["trigger"], found["type"])
        reason = ignored_because(trigger.type, push_on=current_app.config["BRIDGE_SETTINGS"].coupons is not None)
        problem = code_problem(trigger.trigger) if reason is None else None
        if problem:
            reason = f"not pushed: {problem}"
    else:
        reason = f"topic {topic or '(none)'} is not acted on (only New Conversion Trigger is)"
    try:
        result = refersion_events.record(
            get_db(),
            store_hash=store.store_hash,
            topic=topic,
            body=body,
            body_sha256=hashlib.sha256(body).hexdigest(),
            trigger=trigger,
            ignored_because=reason,
            now=time.time(),
        )
    except (sqlite3.Error, OSError):
        log.exception("Could not store a Refersion webhook event")
        return _error(503, "The bridge cannot store events right now; retry later.")
    _log_received(store.store_hash, topic, trigger, result)
    return Response(status=200)


def _log_received(store_hash: str, topic: str, trigger: refersion_events.Trigger | None, result: dict) -> None:
    # The topic and the code are the sender's text: escaped, so that they cannot start a line of their own.
    what = f"Refersion {topic.encode('unicode_escape').decode('ascii') or 'webhook'} for store {store_hash}"
    if trigger is not None:
        what += f" ({trigger.type} trigger {trigger.trigger_id}: {trigger.trigger.encode('unicode_escape').decode('ascii')})"
    if not result["stored"]:
        log.info("Re-delivery of %s ignored (already stored)", what)
    elif result["outcome"] == refersion_events.IGNORED:
        log.info("%s recorded, not acted on: %s", what, result["note"])
    else:
        log.info("%s stored; its code is queued for BigCommerce", what)
