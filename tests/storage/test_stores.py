"""The store registry: which stores the bridge serves, with which credentials and settings,
and the secrets it keeps in the database encrypted at rest."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from bridge.storage import stores as registry_module
from bridge.storage.db import connect, immediate
from bridge.storage.stores import API_ACCOUNT, APP, KEEP, REFERSION, RefersionKeys, StoreRegistry, secret_hint
from bridge.storage.vault import VaultError
from tests.conftest import BC_TOKEN, ENCRYPTION_KEY, REFERSION_PUBLIC, REFERSION_SECRET, STORE_HASH

NEW_KEY = "bmV3LWVuY3J5cHRpb24ta2V5LWZvci10aGUtdGVzdHM="
TOKENS = {"appaaa": "app-token-aaa-5d0e61f3c29b7a84", "appbbb": "app-token-bbb-0c7f2e9a41d6b358"}
OWN_PUBLIC, OWN_SECRET = "pub_store_bbb_own", "sec_store_bbb_own_7e21c94f0ad3"
OWNER = {"id": 41, "email": "owner@shop.test"}


def install(db, settings, store_hash: str, token: str) -> None:
    with immediate(db):
        StoreRegistry(settings).install(
            db, store_hash=store_hash, access_token=token, scopes=["store_v2_orders_read_only"], user=OWNER, owner=OWNER, now=time.time()
        )


def save(db, settings, store_hash: str, **changes) -> None:
    with immediate(db):
        StoreRegistry(settings).save_settings(db, store_hash=store_hash, now=time.time(), **changes)


def forms_of(secret: str) -> dict[str, bytes]:
    """The ways a secret could sit in a file: as text, and encoded."""
    raw = secret.encode("utf-8")
    return {
        "utf-8": raw,
        "utf-16": secret.encode("utf-16-le"),
        "base64": base64.b64encode(raw).rstrip(b"="),
        "urlsafe base64": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
    }


def assert_not_in_files(paths: list[Path], secrets: list[str]) -> None:
    for path in paths:
        data = path.read_bytes()
        for secret in secrets:
            for form, encoded in forms_of(secret).items():
                assert encoded not in data, f"{path.name} holds a secret ({form})"


@pytest.fixture
def two_apps(settings, db):
    """Two app installs, one with its own Refersion key pair; the connection stays open."""
    for store_hash, token in TOKENS.items():
        install(db, settings, store_hash, token)
    save(db, settings, "appbbb", public_key=OWN_PUBLIC, secret_key=OWN_SECRET)
    return settings


# --- Secrets at rest -------------------------------------------------------------------------


def test_the_database_file_and_its_wal_never_hold_a_secret(two_apps, db):
    path = Path(two_apps.database.path)
    wal = Path(f"{path}-wal")
    secrets = [*TOKENS.values(), OWN_SECRET]
    # Before a checkpoint, with the connection open: the new rows are in the WAL only.
    assert wal.exists() and b"appbbb" in wal.read_bytes() and OWN_PUBLIC.encode() in wal.read_bytes()
    assert_not_in_files([path, wal], secrets)
    # After a checkpoint, the rows are in the main file.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert b"appbbb" in path.read_bytes() and b"gAAAAA" in path.read_bytes()  # Fernet tokens' prefix
    assert_not_in_files([path, wal], secrets)
    # Changed settings and a rotation leave none behind either, in free pages or the WAL.
    save(db, two_apps, "appaaa", public_key="pub_store_aaa_own", secret_key="sec_store_aaa_own_9b3d5e7f1a")
    with immediate(db):
        StoreRegistry(two_apps).rotate_secrets(db)
    db.close()  # the last connection checkpoints and removes the WAL
    assert_not_in_files([file for file in (path, wal) if file.exists()], [*secrets, "sec_store_aaa_own_9b3d5e7f1a"])


def test_after_a_rotation_every_secret_is_read_with_the_new_key_alone(two_apps, db, make_settings):
    rotating = make_settings(server_encryption_key=f"{NEW_KEY},{ENCRYPTION_KEY}")
    with immediate(db):
        assert StoreRegistry(rotating).rotate_secrets(db) == 3
    for keys in (f"{NEW_KEY},{ENCRYPTION_KEY}", NEW_KEY):
        found = {store.store_hash: store for store in StoreRegistry(make_settings(server_encryption_key=keys)).all(db)}
        assert {store_hash: found[store_hash].access_token for store_hash in TOKENS} == TOKENS
        assert found["appbbb"].refersion == RefersionKeys(OWN_PUBLIC, OWN_SECRET)
    old_only = StoreRegistry(make_settings(server_encryption_key=ENCRYPTION_KEY))
    with pytest.raises(VaultError, match=r"server\.encryption_key cannot decrypt"):
        old_only.get(db, "appaaa")
    with pytest.raises(VaultError, match=r"server\.encryption_key"):
        old_only.check_secrets(db)


def test_a_rotation_that_cannot_read_a_secret_raises_and_the_transaction_keeps_every_secret(two_apps, db, make_settings):
    before = list(db.query("SELECT * FROM stores ORDER BY store_hash"))
    with pytest.raises(VaultError, match=r"server\.encryption_key cannot decrypt"), immediate(db):
        StoreRegistry(make_settings(server_encryption_key=NEW_KEY)).rotate_secrets(db)  # the old key is not listed
    assert list(db.query("SELECT * FROM stores ORDER BY store_hash")) == before


# --- Which stores, with which credentials --------------------------------------------------


def test_the_configured_store_comes_first_then_app_installs_by_hash(settings, db):
    install(db, settings, "zzz999", "app-token-zzz-0123456789")
    install(db, settings, "aaa000", "app-token-aaa-0123456789")
    listed = StoreRegistry(settings).all(db)
    assert [(store.store_hash, store.mode) for store in listed] == [(STORE_HASH, API_ACCOUNT), ("aaa000", APP), ("zzz999", APP)]
    assert [store.access_token for store in listed] == [BC_TOKEN, "app-token-aaa-0123456789", "app-token-zzz-0123456789"]
    assert all(store.refersion == RefersionKeys(REFERSION_PUBLIC, REFERSION_SECRET) for store in listed)  # the config's pair
    assert StoreRegistry(settings).all(None) == listed[:1]  # without a database: the configured store alone


def test_without_a_configured_store_only_app_installs_are_served(make_settings, db):
    settings = make_settings(bigcommerce_store_hash=None, bigcommerce_access_token=None)
    install(db, settings, "appccc", "app-token-ccc-0123456789")
    assert [store.store_hash for store in StoreRegistry(settings).all(db)] == ["appccc"]
    assert StoreRegistry(settings).get(db, STORE_HASH) is None


def test_a_store_the_bridge_has_no_credentials_for_is_none(settings, db):
    registry = StoreRegistry(settings)
    assert registry.get(db, "neverseen") is None
    save(db, settings, "neverseen", dry_run=True)  # settings alone are no install
    assert registry.get(db, "neverseen") is None
    assert [store.store_hash for store in registry.all(db)] == [STORE_HASH]
    assert registry_module.installs(db) == []


def test_installs_lists_current_and_uninstalled_app_installs_without_secrets(two_apps, db):
    with immediate(db):
        registry_module.uninstall(db, store_hash="appaaa", now=time.time())
    listed = registry_module.installs(db)
    assert [(row["store_hash"], row["uninstalled_at"] is not None) for row in listed] == [("appaaa", True), ("appbbb", False)]
    assert listed[1]["installed_by"] == OWNER["email"] and listed[1]["scopes"] == "store_v2_orders_read_only"
    assert not any("token" in column or "secret" in column for column in listed[0])


def test_an_uninstalled_store_is_none_until_it_installs_again(two_apps, db):
    registry = StoreRegistry(two_apps)
    with immediate(db):
        assert registry_module.uninstall(db, store_hash="appbbb", now=time.time()) is True
    assert registry.get(db, "appbbb") is None
    assert [store.store_hash for store in registry.all(db)] == [STORE_HASH, "appaaa"]
    assert db.execute("SELECT access_token FROM stores WHERE store_hash = 'appbbb'").fetchone()[0] is None  # the token is gone
    assert not registry_module.has_user(db, store_hash="appbbb", user_id=OWNER["id"])
    install(db, two_apps, "appbbb", "app-token-bbb-reinstalled-0001")
    store = registry.get(db, "appbbb")
    assert store.access_token == "app-token-bbb-reinstalled-0001"
    assert store.refersion == RefersionKeys(OWN_PUBLIC, OWN_SECRET)  # its settings survived the uninstall
    with immediate(db):
        assert registry_module.uninstall(db, store_hash=STORE_HASH, now=time.time()) is False  # not an app install


def test_mode_of_says_what_get_says_without_decrypting_anything(two_apps, db, make_settings):
    with immediate(db):
        registry_module.uninstall(db, store_hash="appaaa", now=time.time())
    save(db, two_apps, "settingsonly", dry_run=True)
    registry = StoreRegistry(two_apps)
    hashes = [STORE_HASH, "appaaa", "appbbb", "settingsonly", "neverseen"]
    expected = [API_ACCOUNT, None, APP, None, None]
    assert [registry.mode_of(db, store_hash) for store_hash in hashes] == expected
    assert [store.mode if (store := registry.get(db, store_hash)) else None for store_hash in hashes] == expected
    wrong_key = StoreRegistry(make_settings(server_encryption_key=NEW_KEY))  # cannot read the stored secrets
    with pytest.raises(VaultError):
        wrong_key.get(db, "appbbb")
    assert wrong_key.mode_of(db, "appbbb") == APP


# --- Per-store settings ----------------------------------------------------------------------


@pytest.mark.parametrize("store_hash", [STORE_HASH, "appaaa"], ids=["configured store", "app store"])
def test_a_stores_own_settings_override_the_config_and_clearing_returns_to_it(make_settings, db, store_hash):
    settings = make_settings(rules_dry_run="false", rules_excluded_coupons="HOLIDAY5")
    install(db, settings, "appaaa", TOKENS["appaaa"])
    registry = StoreRegistry(settings)
    default = registry.get(db, store_hash)
    assert (default.dry_run, default.excluded_coupons) == (None, None)
    assert default.policy(settings.rules) == settings.rules

    save(db, settings, store_hash, public_key=OWN_PUBLIC, secret_key=OWN_SECRET, dry_run=True, excluded_coupons=["VIP20", "staff"])
    own = registry.get(db, store_hash)
    assert own.refersion == RefersionKeys(OWN_PUBLIC, OWN_SECRET)
    policy = own.policy(settings.rules)
    assert (policy.dry_run, policy.excluded_coupons) == (True, ("VIP20", "staff"))
    assert policy.order_statuses == settings.rules.order_statuses  # the rest is the config's
    assert own.fingerprint(REFERSION) != default.fingerprint(REFERSION)
    other = registry.get(db, "appaaa" if store_hash == STORE_HASH else STORE_HASH)
    assert other.policy(settings.rules) == settings.rules and other.refersion == default.refersion  # only this store changed

    save(db, settings, store_hash, dry_run=False, excluded_coupons=[])  # explicit "off" and "none", not the config's
    policy = registry.get(db, store_hash).policy(settings.rules)
    assert (policy.dry_run, policy.excluded_coupons) == (False, ())

    save(db, settings, store_hash, public_key=None, dry_run=None, excluded_coupons=None)
    cleared = registry.get(db, store_hash)
    assert cleared == default
    assert registry.settings_of(db, store_hash)["refersion_secret_hint"] is None


def test_settings_left_out_are_kept(two_apps, db):
    save(db, two_apps, "appbbb", dry_run=True)
    store = StoreRegistry(two_apps).get(db, "appbbb")
    assert store.refersion == RefersionKeys(OWN_PUBLIC, OWN_SECRET) and store.dry_run is True
    save(db, two_apps, "appbbb", public_key="pub_store_bbb_renamed", secret_key=KEEP)  # a new public key, the secret kept
    assert StoreRegistry(two_apps).get(db, "appbbb").refersion == RefersionKeys("pub_store_bbb_renamed", OWN_SECRET)


def test_clearing_the_secret_key_clears_the_pair(two_apps, db):
    save(db, two_apps, "appbbb", secret_key=None)
    assert StoreRegistry(two_apps).get(db, "appbbb").refersion == RefersionKeys(REFERSION_PUBLIC, REFERSION_SECRET)
    assert StoreRegistry(two_apps).settings_of(db, "appbbb")["refersion_public_key"] is None


def test_a_store_without_any_key_pair_has_none(make_settings, db):
    settings = make_settings(
        bigcommerce_store_hash=None, bigcommerce_access_token=None, refersion_public_key=None, refersion_secret_key=None
    )
    install(db, settings, "appaaa", TOKENS["appaaa"])
    assert StoreRegistry(settings).get(db, "appaaa").refersion is None
    save(db, settings, "appaaa", public_key=OWN_PUBLIC, secret_key=OWN_SECRET)
    assert StoreRegistry(settings).get(db, "appaaa").refersion == RefersionKeys(OWN_PUBLIC, OWN_SECRET)


def test_settings_of_shows_a_hint_of_the_secret_and_the_defaults(two_apps, db):
    shown = StoreRegistry(two_apps).settings_of(db, "appbbb")
    assert shown == {
        "store_hash": "appbbb",
        "refersion_public_key": OWN_PUBLIC,
        "refersion_secret_hint": "sec_…0ad3",
        "dry_run": None,
        "excluded_coupons": None,
        "default_public_key": REFERSION_PUBLIC,
        "default_dry_run": False,
        "default_excluded_coupons": [],
    }
    assert OWN_SECRET not in repr(shown) and OWN_SECRET not in repr(StoreRegistry(two_apps).get(db, "appbbb"))


@pytest.mark.parametrize(
    ("secret", "hint"),
    [(None, None), ("", None), ("short-1", "sec_…"), ("sec_elevenchr", "sec_…nchr"), ("sec_live_0123456789abcdef", "sec_…cdef")],
)
def test_secret_hint_shows_four_characters_at_most(secret, hint):
    assert secret_hint(secret) == hint


# --- Secrets and the key ---------------------------------------------------------------------


def test_check_secrets_counts_what_it_could_read(two_apps, db):
    assert StoreRegistry(two_apps).check_secrets(db) == 3


def test_check_secrets_needs_no_key_while_nothing_is_stored(make_settings, db):
    assert StoreRegistry(make_settings(server_encryption_key=None)).check_secrets(db) == 0


@pytest.mark.parametrize(
    ("key", "says"),
    [(None, "holds encrypted secrets but server.encryption_key is not set"), (NEW_KEY, "server.encryption_key cannot decrypt")],
    ids=["missing key", "wrong key"],
)
def test_check_secrets_names_the_setting_when_the_key_cannot_read_them(two_apps, db, make_settings, key, says):
    with pytest.raises(VaultError) as raised:
        StoreRegistry(make_settings(server_encryption_key=key)).check_secrets(db)
    assert says in str(raised.value)
    assert not any(secret in str(raised.value) for secret in [*TOKENS.values(), OWN_SECRET, ENCRYPTION_KEY, NEW_KEY])


def test_without_a_key_nothing_secret_can_be_stored(make_settings, db):
    settings = make_settings(server_encryption_key=None)
    with pytest.raises(VaultError, match=r"server\.encryption_key is not set"):
        install(db, settings, "appaaa", TOKENS["appaaa"])
    with pytest.raises(VaultError, match=r"server\.encryption_key is not set"):
        save(db, settings, STORE_HASH, public_key=OWN_PUBLIC, secret_key=OWN_SECRET)
    assert db.execute("SELECT count(*) FROM stores").fetchone()[0] == 0  # the transactions rolled back
    save(db, settings, STORE_HASH, dry_run=True)  # settings without a secret need no key
    assert StoreRegistry(settings).get(db, STORE_HASH).dry_run is True


def test_a_new_token_changes_the_bigcommerce_fingerprint_only(two_apps, db):
    registry = StoreRegistry(two_apps)
    before = registry.get(db, "appaaa")
    install(db, two_apps, "appaaa", "app-token-aaa-new-0123456789")
    after = registry.get(db, "appaaa")
    assert after.fingerprint("bigcommerce") != before.fingerprint("bigcommerce")
    assert after.fingerprint(REFERSION) == before.fingerprint(REFERSION)
    assert TOKENS["appaaa"] not in before.fingerprint("bigcommerce")


def test_a_connection_of_its_own_sees_the_same_stores(two_apps):
    db = connect(two_apps.database.path)
    try:
        assert [store.store_hash for store in StoreRegistry(two_apps).all(db)] == [STORE_HASH, "appaaa", "appbbb"]
    finally:
        db.close()
