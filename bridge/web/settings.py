"""``GET|POST /settings``: one store's own Refersion key pair, dry run and excluded coupons.

A store user's session edits its own store only; the admin edits any store the bridge
serves, named with ``?store=``. The secret key is write-only: the page shows at most
``sec_…last4`` of a stored one and never echoes a typed one. The keys are not tried here
(no call to Refersion inside a request): the worker's next report tells whether Refersion
takes them, and the page shows that answer from the read side.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from marshmallow import ValidationError, fields, validate

from bridge.schemas import STORE_HASH, Lenient
from bridge.storage import history, pauses
from bridge.storage.db import immediate
from bridge.storage.stores import REFERSION, Store, StoreRegistry, secret_hint
from bridge.web.auth import require_viewer
from bridge.web.database import get_db

log = logging.getLogger(__name__)

bp = Blueprint("settings", __name__)

MAX_TEXT = 255  # characters in a key or a coupon code
MIN_SECRET = 16  # Refersion's secret keys are far longer; a short one is a typo (and would blank the logs where it is redacted)
MAX_COUPONS = 200
DRY_RUN_CHOICES = {"default": None, "on": True, "off": False}
COUPON_CHOICES = ("default", "own")
# The same words whether the store does not exist or belongs to someone else.
NO_SUCH_STORE = "There is no such store here. Open the settings from the status page."
KEY_CHARACTERS = re.compile(r"[!-~]*")  # printable ASCII without spaces: keys travel in HTTP headers
COUPON_SEPARATORS = re.compile(r"[,\r\n]+")


def _without_control_characters(text: str) -> None:
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise ValidationError("Remove the control characters (tabs or invisible characters) from it.")


def _long_enough(secret: str) -> None:
    """A blank secret keeps the stored one; any other is at least MIN_SECRET characters."""
    if secret and len(secret) < MIN_SECRET:
        raise ValidationError("That is too short for a Refersion secret key: copy the whole key again from Refersion.")


class RefersionKey(fields.String):
    """A Refersion API key as pasted: trimmed; printable ASCII, no spaces, at most 255 characters.

    Messages never quote the value or its length: the field may hold the secret key.
    """

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        _without_control_characters(text)
        if len(text) > MAX_TEXT:
            raise ValidationError(f"A Refersion key is at most {MAX_TEXT} characters: copy it again from Refersion.")
        if not KEY_CHARACTERS.fullmatch(text):
            raise ValidationError("A Refersion key has only letters, digits and punctuation, no spaces: copy it again from Refersion.")
        return text


class CouponList(fields.String):
    """Coupon codes, one a line or comma-separated: trimmed, without repeats (case-insensitive)."""

    def _deserialize(self, value, attr, data, **kwargs) -> list[str]:
        text = super()._deserialize(value, attr, data, **kwargs)
        codes: dict[str, str] = {}
        for part in COUPON_SEPARATORS.split(text):
            code = part.strip()
            if not code:
                continue
            _without_control_characters(code)
            if len(code) > MAX_TEXT:
                raise ValidationError(f"A coupon code is at most {MAX_TEXT} characters; “{code[:20]}…” is {len(code)}.")
            codes.setdefault(code.casefold(), code)
        if len(codes) > MAX_COUPONS:
            raise ValidationError(f"At most {MAX_COUPONS} coupon codes; this list has {len(codes)}.")
        return list(codes.values())


class SettingsForm(Lenient):
    """The settings form as posted (``csrf_token`` and anything unknown are ignored)."""

    public_key = RefersionKey(load_default="")
    secret_key = RefersionKey(load_default="", validate=_long_enough)
    use_default_keys = fields.Boolean(load_default=False)
    dry_run = fields.String(load_default="default", validate=validate.OneOf(list(DRY_RUN_CHOICES), error="Choose default, on or off."))
    coupons = fields.String(
        load_default="default", validate=validate.OneOf(COUPON_CHOICES, error="Choose the default or this store's own list.")
    )
    excluded_coupons = CouponList(load_default=list)


class StoreQuery(Lenient):
    store = fields.String(load_default=None, validate=STORE_HASH)


def _registry() -> StoreRegistry:
    return current_app.config["BRIDGE_STORES"]


def _chosen_store() -> tuple[Store | None, list[Store]]:
    """The store the page is about, or None and the stores to choose from (the admin, several stores).

    Aborts 404 for a store the viewer may not see or the bridge does not serve.
    """
    try:
        named = StoreQuery().load(request.args)["store"]
    except ValidationError:
        abort(404, description=NO_SUCH_STORE)
    db, viewer = get_db(), g.viewer
    if not viewer.is_admin:
        (own,) = viewer.stores
        if named not in (None, own):
            abort(404, description=NO_SUCH_STORE)
        named = own
    if named is not None:
        store = _registry().get(db, named) if viewer.can_see(named) else None
        if store is None:
            abort(404, description=NO_SUCH_STORE)
        return store, []
    served = _registry().all(db)
    return (served[0], []) if len(served) == 1 else (None, served)


def key_source(current: dict) -> str:
    """``own`` (the store's pair), ``default`` (the config's) or ``none``."""
    if current["refersion_public_key"] and current["refersion_secret_hint"]:
        return "own"
    return "default" if current["default_public_key"] else "none"


def _form_values(current: dict) -> dict:
    """What the form shows before anything is typed."""
    coupons = current["excluded_coupons"]
    return {
        "public_key": current["refersion_public_key"] or "",
        "use_default_keys": False,
        "dry_run": {None: "default", True: "on", False: "off"}[current["dry_run"]],
        "coupons": "default" if coupons is None else "own",
        "excluded_coupons": "\n".join(coupons if coupons is not None else current["default_excluded_coupons"]),
    }


def _render(store: Store, current: dict, values: dict, errors: dict | None = None, status: int = 200):
    db = get_db()
    return (
        render_template(
            "settings.html",
            store=store,
            current=current,
            key_source=key_source(current),
            values=values,
            errors=errors or {},
            health=history.store_health(db, store.store_hash)["refersion"],
            several=g.viewer.is_admin and len(_registry().all(db)) > 1,
            max_text=MAX_TEXT,
            max_coupons=MAX_COUPONS,
        ),
        status,
    )


def _changes(form: dict, current: dict) -> dict:
    """The ``save_settings`` arguments for what the form changes (nothing else).

    :raise ValidationError: the key pair fields do not make a pair.
    """
    public, secret, stored_secret = form["public_key"], form["secret_key"], current["refersion_secret_hint"] is not None
    own_pair = key_source(current) == "own"
    changes: dict = {}
    if form["use_default_keys"]:
        if public not in ("", current["refersion_public_key"]) or secret:
            raise ValidationError({"use_default_keys": ["Either enter a new key pair or go back to the default pair, not both."]})
        if own_pair:
            changes["public_key"] = changes["secret_key"] = None
    elif secret and not public:
        raise ValidationError({"public_key": ["Enter the public key that goes with this secret key."]})
    elif public and not secret and not stored_secret:
        raise ValidationError({"secret_key": ["A public key needs its secret key: enter the secret key too."]})
    elif not public and own_pair:
        raise ValidationError({"public_key": ["Enter the public key, or tick “use the default pair” to forget this store's pair."]})
    elif public and secret:
        changes["public_key"], changes["secret_key"] = public, secret
    elif public and public != current["refersion_public_key"]:
        changes["public_key"] = public  # with the stored secret
    dry_run = DRY_RUN_CHOICES[form["dry_run"]]
    if dry_run != current["dry_run"]:
        changes["dry_run"] = dry_run
    coupons = None if form["coupons"] == "default" else form["excluded_coupons"]
    if coupons != current["excluded_coupons"]:
        changes["excluded_coupons"] = coupons
    return changes


def _in_words(changes: dict, current: dict) -> list[str]:
    """What changed, for the flash line and the log (never a secret: a hint at most)."""
    words = []
    if "public_key" in changes:
        if changes["public_key"] is None:
            fallback = "the bridge's default pair" if current["default_public_key"] else "none (reports pause until a pair is entered)"
            words.append(f"Refersion keys: back to {fallback}")
        elif "secret_key" in changes:
            words.append(f"Refersion keys: public key {changes['public_key']} with secret key {secret_hint(changes['secret_key'])}")
        else:
            words.append(f"Refersion public key: {changes['public_key']} (secret key kept)")
    if "dry_run" in changes:
        value = changes["dry_run"]
        default = "on" if current["default_dry_run"] else "off"
        words.append(f"dry run: {'on' if value else 'off'}" if value is not None else f"dry run: the default ({default})")
    if "excluded_coupons" in changes:
        codes = changes["excluded_coupons"]
        if codes is None:
            words.append("excluded coupons: the default")
        else:
            words.append(f"excluded coupons: {_first_few(codes)}" if codes else "excluded coupons: none")
    return words


def _first_few(codes: list[str], shown: int = 5) -> str:
    """A few codes, so that the flashed line stays small: it travels in the session cookie (4 KB at most)."""
    more = f" and {len(codes) - shown} more" if len(codes) > shown else ""
    return ", ".join(code if len(code) <= 40 else code[:39] + "…" for code in codes[:shown]) + more


@bp.route("/settings", methods=["GET", "POST"])
@require_viewer(json=False)
def settings():
    store, choices = _chosen_store()
    if store is None:
        if request.method == "POST":
            abort(400, description="Name the store whose settings you change: open them from the list at /settings.")
        db = get_db()
        rows = [{"store": served, "key_source": key_source(_registry().settings_of(db, served.store_hash))} for served in choices]
        return render_template("settings.html", store=None, choices=rows)
    db = get_db()
    current = _registry().settings_of(db, store.store_hash)
    if request.method == "GET":
        return _render(store, current, _form_values(current))

    typed = {key: request.form.get(key, "") for key in ("public_key", "dry_run", "coupons", "excluded_coupons")}
    typed["use_default_keys"] = bool(request.form.get("use_default_keys"))
    try:
        form = SettingsForm().load(request.form)
        changes = _changes(form, current)
    except ValidationError as error:
        return _render(store, current, typed, error.messages, 400)
    if not changes:
        flash("Nothing changed.", "info")
        return redirect(url_for("settings.settings", store=store.store_hash), 303)
    resumed = False
    with immediate(db):
        _registry().save_settings(db, store_hash=store.store_hash, now=time.time(), **changes)
        if "public_key" in changes:
            # The worker lifts such a pause itself once it sees the new keys; the page promises it now.
            resumed = any(row["store_hash"] == store.store_hash and row["service"] == REFERSION for row in pauses.pauses(db))
            pauses.resume(db, store_hash=store.store_hash, service=REFERSION)
    words = _in_words(changes, current)
    if resumed:
        words.append("the paused reports to Refersion are sent again now")
    if changes.get("public_key"):
        words.append("the next report tells whether Refersion accepts the keys")
    said = "; ".join(words)
    who = "the admin" if g.viewer.is_admin else f"user {g.viewer.user_id}"
    log.info("Settings of store %s changed by %s: %s", store.store_hash, who, said)
    flash(f"Saved. {said[0].upper()}{said[1:]}.", "ok")
    return redirect(url_for("settings.settings", store=store.store_hash), 303)
