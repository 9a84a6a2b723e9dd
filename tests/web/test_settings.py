"""The settings page: a store's own Refersion key pair (write-only secret), dry run and
excluded coupons, edited by that store's users or by the admin; real SQLite, real
registry, the worker's own view of the result."""

from __future__ import annotations

import hashlib
import logging
import re
from html import unescape

import pytest
from flask import request

from bridge.storage import pauses
from bridge.storage.db import immediate
from bridge.storage.stores import API_ACCOUNT, RefersionKeys, StoreRegistry
from bridge.web.auth import Viewer, start_session
from tests.conftest import BC_TOKEN, REFERSION_PUBLIC, REFERSION_SECRET, STORE_HASH, hook_token_of, install_store, post_webhook
from tests.fakes import load_fixture
from tests.web.test_pages import ADMIN_TOKEN, SESSION_SECRET, csrf, sign_in

STORE_A, STORE_B = "storea1", "storeb2"
USER_A, USER_B = 41, 42
NEW_PUBLIC = "pub_store_a_5d6e"
NEW_SECRET = "sec_store_a_k3y-0123456789wxyz"
OTHER_SECRET = "sec_second_pair_9876543210qrst"


@pytest.fixture
def settings(make_settings):
    return make_settings(
        server_admin_token=ADMIN_TOKEN,
        server_session_secret=SESSION_SECRET,
        rules_excluded_coupons="CONFIG5",
    )


@pytest.fixture
def no_default_keys(make_settings):
    """App mode only (no store-level API account) and no Refersion key pair in the config."""
    return make_settings(
        server_admin_token=ADMIN_TOKEN,
        server_session_secret=SESSION_SECRET,
        bigcommerce_store_hash=None,
        bigcommerce_access_token=None,
        refersion_public_key=None,
        refersion_secret_key=None,
    )


@pytest.fixture
def registry(settings) -> StoreRegistry:
    return StoreRegistry(settings)


@pytest.fixture
def sign_in_store(app):
    """``sign_in_store(client, store, user)``: a store user's session, as the load callback starts it."""

    def start():
        start_session(Viewer(is_admin=False, stores=frozenset({request.args["store"]}), user_id=int(request.args["user"])))
        return "signed in"

    app.add_url_rule("/test-only/sign-in-store", view_func=start)

    def sign_in_as(client, store_hash: str, user_id: int):
        assert client.get(f"/test-only/sign-in-store?store={store_hash}&user={user_id}").status_code == 200
        return client

    return sign_in_as


@pytest.fixture
def two_stores(settings):
    install_store(settings, STORE_A, user_id=USER_A)
    install_store(settings, STORE_B, user_id=USER_B)


@pytest.fixture
def owner_a(app, sign_in_store, two_stores):
    return sign_in_store(app.test_client(), STORE_A, USER_A)


@pytest.fixture
def admin(app, two_stores):
    client = app.test_client()
    sign_in(client)
    return client


def page(client, path: str = "/settings") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def save(client, path: str = "/settings", **form):
    """Post the form as the page would (with its token and its current choices unless given)."""
    html = page(client, path)
    data = {"csrf_token": csrf(html), "dry_run": _checked(html, "dry_run"), "coupons": _checked(html, "coupons")}
    data["public_key"] = re.search(r'id="public_key"[^>]*value="([^"]*)"', html, re.S).group(1)
    data.update(form)
    return client.post(path, data=data)


def _checked(html: str, name: str) -> str:
    return re.search(rf'name="{name}" type="radio" value="(\w+)" checked', html).group(1)


def saved_line(client, response) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)
    html = page(client, response.headers["Location"])
    return unescape(re.search(r'<p class="flash flash-\w+" role="status">(.*?)</p>', html, re.S).group(1))


def column(db, store_hash: str, name: str):
    found = db.execute(f"SELECT {name} FROM stores WHERE store_hash = ?", [store_hash]).fetchone()
    return found[0] if found else None


def refused_pause(db, store_hash: str, service: str = "refersion") -> None:
    with immediate(db):
        pauses.pause(db, store_hash=store_hash, service=service, fingerprint="0" * 16, reason="Refersion refused the keys (401).", now=1.0)


def paused(db) -> set[tuple[str, str]]:
    return {(row["store_hash"], row["service"]) for row in pauses.pauses(db)}


def test_a_store_owner_saves_its_own_key_pair_and_its_refused_reports_resume(owner_a, db, registry):
    refused_pause(db, STORE_A)
    refused_pause(db, STORE_B)
    refused_pause(db, STORE_A, service="bigcommerce")
    html = page(owner_a)
    assert f"store <code>{STORE_A}</code>" in html
    assert "reports with the bridge's default key pair" in html
    assert REFERSION_PUBLIC not in html  # the config's public key is the operator's business

    response = save(owner_a, public_key=NEW_PUBLIC, secret_key=NEW_SECRET)
    assert response.headers["Location"] == f"/settings?store={STORE_A}"
    line = saved_line(owner_a, response)
    assert line.startswith("Saved. Refersion keys: public key pub_store_a_5d6e with secret key sec_…wxyz")
    assert "the paused reports to Refersion are sent again now" in line
    assert "the next report tells whether Refersion accepts the keys" in line

    stored = column(db, STORE_A, "refersion_secret_key")
    assert stored and NEW_SECRET not in stored and "wxyz" not in stored
    assert column(db, STORE_A, "refersion_public_key") == NEW_PUBLIC
    assert registry.get(db, STORE_A).refersion == RefersionKeys(NEW_PUBLIC, NEW_SECRET)
    assert registry.get(db, STORE_B).refersion == RefersionKeys(REFERSION_PUBLIC, REFERSION_SECRET)
    assert paused(db) == {(STORE_B, "refersion"), (STORE_A, "bigcommerce")}

    html = page(owner_a)
    assert "reports with its own key pair" in html and "sec_…wxyz</code>" in html
    assert 'placeholder="Leave blank to keep it"' in html
    assert f'value="{NEW_PUBLIC}"' in html


def test_an_owner_gets_404_for_any_other_store_and_changes_nothing_there(owner_a, db, registry):
    not_found = owner_a.get("/settings?store=nosuchstore")
    assert not_found.status_code == 404
    for other in (STORE_B, STORE_HASH, "bad-hash!", "a" * 65):
        response = owner_a.get(f"/settings?store={other}")
        assert response.status_code == 404
        assert response.get_data() == not_found.get_data()  # never says the store exists
    token = csrf(page(owner_a))
    before = registry.settings_of(db, STORE_B)
    response = owner_a.post(
        f"/settings?store={STORE_B}", data={"csrf_token": token, "public_key": NEW_PUBLIC, "secret_key": NEW_SECRET, "dry_run": "on"}
    )
    assert response.status_code == 404
    assert registry.settings_of(db, STORE_B) == before
    assert column(db, STORE_B, "refersion_public_key") is None
    assert page(owner_a, f"/settings?store={STORE_A}")  # its own store, named, is fine


def test_the_admin_picks_a_store_and_edits_any_including_the_configured_one(admin, db, registry, settings):
    html = page(admin)
    listed = re.findall(r'href="/settings\?store=(\w+)"', html)
    assert listed == [STORE_HASH, STORE_A, STORE_B]
    assert "store-level API account" in html and "app install" in html
    assert admin.get("/settings?store=nosuchstore").status_code == 404

    html = page(admin, f"/settings?store={STORE_HASH}")
    assert "store-level API account" in html and f"public key <code>{REFERSION_PUBLIC}</code>" in html
    assert column(db, STORE_HASH, "mode") is None  # no row until something is saved
    line = saved_line(admin, save(admin, f"/settings?store={STORE_HASH}", dry_run="on"))
    assert line == "Saved. Dry run: on."
    assert column(db, STORE_HASH, "mode") == API_ACCOUNT
    store = registry.get(db, STORE_HASH)
    assert (store.mode, store.access_token, store.dry_run) == (API_ACCOUNT, BC_TOKEN, True)
    assert store.policy(settings.rules).dry_run is True

    saved_line(admin, save(admin, f"/settings?store={STORE_B}", public_key=NEW_PUBLIC, secret_key=NEW_SECRET))
    assert registry.get(db, STORE_B).refersion == RefersionKeys(NEW_PUBLIC, NEW_SECRET)
    assert registry.get(db, STORE_A).refersion == RefersionKeys(REFERSION_PUBLIC, REFERSION_SECRET)
    assert admin.post("/settings", data={"csrf_token": csrf(html), "dry_run": "on"}).status_code == 400  # which store?


def test_with_one_store_the_admin_goes_straight_to_its_settings(app):
    client = app.test_client()
    sign_in(client)
    html = page(client)
    assert f"store <code>{STORE_HASH}</code>" in html and "All stores" not in html


def test_a_blank_secret_keeps_the_stored_one_and_the_pair_can_go_back_to_the_default(owner_a, db, registry):
    save(owner_a, public_key=NEW_PUBLIC, secret_key=NEW_SECRET)
    line = saved_line(owner_a, save(owner_a, public_key="pub_store_a_renamed", secret_key=""))
    assert line.startswith("Saved. Refersion public key: pub_store_a_renamed (secret key kept)")
    assert registry.get(db, STORE_A).refersion == RefersionKeys("pub_store_a_renamed", NEW_SECRET)
    assert saved_line(owner_a, save(owner_a)) == "Nothing changed."
    assert registry.get(db, STORE_A).refersion == RefersionKeys("pub_store_a_renamed", NEW_SECRET)

    refused_pause(db, STORE_A)
    line = saved_line(owner_a, save(owner_a, use_default_keys="on"))
    assert line.startswith("Saved. Refersion keys: back to the bridge's default pair")
    assert registry.get(db, STORE_A).refersion == RefersionKeys(REFERSION_PUBLIC, REFERSION_SECRET)
    assert (column(db, STORE_A, "refersion_public_key"), column(db, STORE_A, "refersion_secret_key")) == (None, None)
    assert paused(db) == set()
    assert 'name="use_default_keys"' not in page(owner_a)  # nothing of its own left to forget


def test_without_a_default_pair_clearing_says_reports_pause(no_default_keys, db):
    """App mode with no pair in the config: the page says what going back to "none" means."""
    from bridge.web.app import create_app

    settings = no_default_keys
    install_store(settings, STORE_A)
    client = create_app(settings).test_client()
    sign_in(client)
    html = page(client)
    assert "<strong>No key pair:</strong>" in html and "paused until you enter a pair" in html
    save(client, public_key=NEW_PUBLIC, secret_key=NEW_SECRET)
    assert "reports pause until a pair is entered again" in page(client)
    line = saved_line(client, save(client, use_default_keys="on"))
    assert line == "Saved. Refersion keys: back to none (reports pause until a pair is entered)."
    assert StoreRegistry(settings).get(db, STORE_A).refersion is None


@pytest.mark.parametrize(
    ("choice", "expected", "words"),
    [("on", True, "Dry run: on"), ("off", False, "Dry run: off")],
)
def test_dry_run_round_trips_and_is_what_the_worker_uses(owner_a, db, registry, settings, choice, expected, words):
    assert saved_line(owner_a, save(owner_a, dry_run=choice)) == f"Saved. {words}."
    assert registry.get(db, STORE_A).policy(settings.rules).dry_run is expected
    assert f'value="{choice}" checked' in page(owner_a)
    assert saved_line(owner_a, save(owner_a, dry_run="default")) == "Saved. Dry run: the default (off)."
    assert registry.get(db, STORE_A).dry_run is None
    assert registry.get(db, STORE_A).policy(settings.rules).dry_run is False
    assert "Use the default: off" in page(owner_a)


def test_excluded_coupons_are_trimmed_deduplicated_and_can_go_back_to_the_default(owner_a, db, registry, settings):
    html = page(owner_a)
    assert '<span class="codes">CONFIG5</span>' in html and 'value="default" checked' in html
    line = saved_line(owner_a, save(owner_a, coupons="own", excluded_coupons=" holiday5 , SITE10\r\nHoliday5\n\n,site10,Summer"))
    assert line == "Saved. Excluded coupons: holiday5, SITE10, Summer."
    assert registry.get(db, STORE_A).policy(settings.rules).excluded_coupons == ("holiday5", "SITE10", "Summer")
    assert ">holiday5\nSITE10\nSummer</textarea>" in page(owner_a)

    assert saved_line(owner_a, save(owner_a, coupons="own", excluded_coupons="")) == "Saved. Excluded coupons: none."
    assert registry.get(db, STORE_A).policy(settings.rules).excluded_coupons == ()

    longest = [(hashlib.sha512(str(n).encode()).hexdigest() * 2)[:255] for n in range(200)]  # the most the form takes
    response = save(owner_a, coupons="own", excluded_coupons="\n".join(longest))
    assert len(owner_a.get_cookie("bridge_session").value) < 4000  # with the flashed line: browsers drop larger cookies
    line = saved_line(owner_a, response)
    assert line == f"Saved. Excluded coupons: {', '.join(code[:39] + '…' for code in longest[:5])} and 195 more."
    assert registry.get(db, STORE_A).excluded_coupons == tuple(longest)

    line = saved_line(owner_a, save(owner_a, coupons="default", excluded_coupons="ignored-when-default"))
    assert line == "Saved. Excluded coupons: the default."
    assert registry.get(db, STORE_A).excluded_coupons is None
    assert registry.get(db, STORE_A).policy(settings.rules).excluded_coupons == ("CONFIG5",)


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"public_key": "pub_\x01abc", "secret_key": NEW_SECRET}, "public_key", "Remove the control characters"),
        ({"public_key": "pub abc", "secret_key": NEW_SECRET}, "public_key", "no spaces"),
        ({"public_key": "p" * 256, "secret_key": NEW_SECRET}, "public_key", "at most 255 characters"),
        ({"public_key": NEW_PUBLIC, "secret_key": NEW_SECRET + "\x7f"}, "secret_key", "Remove the control characters"),
        ({"public_key": NEW_PUBLIC, "secret_key": NEW_SECRET + "é"}, "secret_key", "letters, digits and punctuation"),
        ({"public_key": NEW_PUBLIC, "secret_key": ""}, "secret_key", "A public key needs its secret key"),
        ({"public_key": NEW_PUBLIC, "secret_key": "1"}, "secret_key", "too short for a Refersion secret key"),
        ({"public_key": "", "secret_key": NEW_SECRET}, "public_key", "Enter the public key that goes with this secret key"),
        ({"coupons": "own", "excluded_coupons": "GOOD\nBAD\x07CODE"}, "excluded_coupons", "Remove the control characters"),
        ({"coupons": "own", "excluded_coupons": "C" * 256}, "excluded_coupons", "at most 255 characters"),
        ({"coupons": "own", "excluded_coupons": ",".join(f"CODE{n}" for n in range(201))}, "excluded_coupons", "this list has 201"),
        ({"dry_run": "sometimes"}, "dry_run", "Choose default, on or off"),
        ({"coupons": "mine"}, "coupons", "Choose the default"),
    ],
)
def test_bad_input_is_refused_next_to_its_field_keeping_what_was_typed(owner_a, db, registry, form, field, message):
    before = registry.settings_of(db, STORE_A)
    response = save(owner_a, **form)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Nothing was saved" in html
    error = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', html, re.S)
    assert error and message in error.group(1), html
    if field in ("public_key", "secret_key", "excluded_coupons"):
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', html)
    assert registry.settings_of(db, STORE_A) == before
    assert NEW_SECRET not in html  # the secret is never sent back, even a refused one
    assert 'id="secret_key" name="secret_key" type="password" value=""' in html
    if form.get("public_key") and field != "public_key":
        assert f'value="{form["public_key"]}"' in html
    if "excluded_coupons" in form and "\x07" not in form["excluded_coupons"]:
        assert form["excluded_coupons"][:50] in html


def test_a_new_pair_and_going_back_to_the_default_at_once_is_refused(owner_a, db, registry):
    save(owner_a, public_key=NEW_PUBLIC, secret_key=NEW_SECRET)
    response = save(owner_a, use_default_keys="on", public_key="pub_other", secret_key=OTHER_SECRET)
    assert response.status_code == 400
    assert "not both" in response.get_data(as_text=True)
    assert registry.get(db, STORE_A).refersion == RefersionKeys(NEW_PUBLIC, NEW_SECRET)
    response = save(owner_a, public_key="")
    assert response.status_code == 400 and "or tick" in response.get_data(as_text=True)


def test_a_post_without_the_form_token_is_refused(owner_a, db, registry):
    before = registry.settings_of(db, STORE_A)
    response = owner_a.post("/settings", data={"public_key": NEW_PUBLIC, "secret_key": NEW_SECRET, "dry_run": "on"})
    assert response.status_code == 400
    response = owner_a.post("/settings", data={"csrf_token": "forged" * 8, "dry_run": "on"})
    assert response.status_code == 400
    assert registry.settings_of(db, STORE_A) == before


def test_without_a_session_the_settings_page_sends_you_to_sign_in(client, two_stores, db, registry):
    response = client.get(f"/settings?store={STORE_A}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next=/settings?store%3D{STORE_A}"
    before = registry.settings_of(db, STORE_A)
    response = client.post(f"/settings?store={STORE_A}", data={"public_key": NEW_PUBLIC, "secret_key": NEW_SECRET})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert registry.settings_of(db, STORE_A) == before


def test_the_secret_never_appears_in_a_page_a_log_or_the_session(app, owner_a, caplog):
    caplog.set_level(logging.DEBUG)
    bodies = [save(owner_a, public_key=NEW_PUBLIC, secret_key=NEW_SECRET)]
    bodies.append(owner_a.get(bodies[0].headers["Location"]))
    bodies.append(save(owner_a, public_key="pub bad", secret_key=OTHER_SECRET))  # refused
    bodies.append(save(owner_a, public_key="", secret_key=OTHER_SECRET))  # refused
    bodies.append(save(owner_a, public_key=NEW_PUBLIC, secret_key=OTHER_SECRET + "\x00"))  # refused
    bodies.append(owner_a.get("/"))
    bodies.append(owner_a.get("/api/status"))
    assert [response.status_code for response in bodies] == [303, 200, 400, 400, 400, 200, 200]
    session = app.session_interface.get_signing_serializer(app).loads(owner_a.get_cookie("bridge_session").value)
    for secret in (NEW_SECRET, OTHER_SECRET, NEW_SECRET[:-4], OTHER_SECRET[4:]):
        for response in bodies:
            assert secret.encode() not in response.get_data()
            assert all(secret not in value for value in response.headers.values())
        assert secret not in caplog.text
        assert secret not in repr(session)
    said = f"Settings of store {STORE_A} changed by user {USER_A}: Refersion keys: public key {NEW_PUBLIC} with secret key sec_…wxyz"
    assert said in caplog.text


def test_the_status_page_shows_each_stores_mode_keys_and_dry_run(admin, db, settings, client, worker, bigcommerce):
    with immediate(db):
        StoreRegistry(settings).save_settings(db, store_hash=STORE_A, now=1.0, public_key=NEW_PUBLIC, secret_key=NEW_SECRET, dry_run=True)
    html = page(admin, "/")
    cards = dict(re.findall(r'<article class="card store">\s*<h3>Store <code>(\w+)</code>(.*?)</article>', html, re.S))
    assert list(cards) == [STORE_HASH, STORE_A, STORE_B]
    assert "store-level API account" in cards[STORE_HASH] and "app install" in cards[STORE_A]
    assert "Uses the default Refersion keys (config)." in cards[STORE_HASH]
    assert "Uses its own Refersion keys." in cards[STORE_A]
    assert "Dry run</dt>" in cards[STORE_A] and "Dry run</dt>" not in cards[STORE_B]
    for store_hash, card in cards.items():
        assert f'href="/settings?store={store_hash}">Settings for this store' in card
    assert 'href="/settings">Settings</a>' in html  # the header's link
    assert "in its settings" not in html  # nothing paused, every store has keys

    refused_pause(db, STORE_B)
    card = re.search(rf"<code>{STORE_B}</code>.*?</article>", page(admin, "/"), re.S).group(0)
    assert "Paused: keys refused" in card and f'href="/settings?store={STORE_B}">Change this store' in card
    assert NEW_SECRET not in html


def test_the_status_page_api_keeps_its_shape(admin):
    stores = admin.get("/api/status").get_json()["stores"]
    assert [store["store_hash"] for store in stores] == [STORE_HASH, STORE_A, STORE_B]
    assert set(stores[0]) == {"store_hash", "mode", "bigcommerce", "hooks", "refersion", "last_webhook_at"}


def test_a_store_with_no_keys_anywhere_pauses_until_its_owner_enters_a_pair(no_default_keys, make_worker, bigcommerce, refersion, db):
    """App mode without a default pair: the report waits (nothing sent), the page says so; saving
    a pair on the settings page resumes it at once and the worker reports with that pair."""
    from bridge.web.app import create_app
    from bridge.worker.deliver import NO_KEYS

    settings = no_default_keys
    token = f"app-token-{STORE_A}-0123456789"
    install_store(settings, STORE_A, access_token=token, user_id=USER_A)
    bigcommerce.add_store(STORE_A, token)
    order_id = bigcommerce.add_fixture(load_fixture("manual_discount"), store_hash=STORE_A)
    app = create_app(settings)

    def start():
        start_session(Viewer(is_admin=False, stores=frozenset({STORE_A}), user_id=USER_A))
        return "signed in"

    app.add_url_rule("/test-only/sign-in-store", view_func=start)
    intake = app.test_client()
    assert (
        post_webhook(
            intake, bigcommerce.webhook_body("store/order/statusUpdated", order_id, store_hash=STORE_A), token=hook_token_of(STORE_A)
        ).status_code
        == 200
    )
    worker = make_worker(settings)
    worker.run_until_idle()
    assert refersion.attempts == []
    (pause,) = pauses.pauses(db)
    assert (pause["store_hash"], pause["service"], pause["reason"]) == (STORE_A, "refersion", NO_KEYS)

    owner = app.test_client()
    owner.get("/test-only/sign-in-store")
    status_page = page(owner, "/")
    assert "Paused: no keys" in status_page and f'href="/settings?store={STORE_A}">Enter this store' in status_page
    assert NO_KEYS in status_page

    refersion.public_key, refersion.secret_key = NEW_PUBLIC, NEW_SECRET
    line = saved_line(owner, save(owner, public_key=NEW_PUBLIC, secret_key=NEW_SECRET))
    assert "the paused reports to Refersion are sent again now" in line
    assert pauses.pauses(db) == []  # at once, before the worker looks
    worker.run_until_idle()
    (received,) = refersion.received
    assert received.body["order_id"] == str(order_id)
    assert (received.headers["Refersion-Public-Key"], received.headers["Refersion-Secret-Key"]) == (NEW_PUBLIC, NEW_SECRET)
    assert 'badge-reported">Reported' in page(owner, "/")
