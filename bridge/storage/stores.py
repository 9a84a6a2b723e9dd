"""The store registry: every store the bridge serves, and with which credentials.

Two modes. ``api_account``: the store-level API account in ``[bigcommerce]`` of the
config, reporting with the key pair in ``[refersion]``. ``app``: a store that installed
the bridge as a BigCommerce app; its row in ``stores`` holds its access token. Either
kind may have a row of settings from the settings page (its own Refersion key pair, dry
run, excluded coupons); a NULL there means "the config's". Secrets in rows are
encrypted with :class:`~bridge.storage.vault.Vault`. The web and the worker ask this
registry about stores, never the settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from bridge import logs
from bridge.config import Settings
from bridge.core import hooks
from bridge.core.rules import Policy
from bridge.storage.db import rows
from bridge.storage.vault import Vault

API_ACCOUNT, APP = "api_account", "app"
BIGCOMMERCE, REFERSION = "bigcommerce", "refersion"
KEEP = object()  # a settings value left as it is


@dataclass(frozen=True)
class RefersionKeys:
    public_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class Store:
    store_hash: str
    mode: str
    access_token: str = field(repr=False)
    client_id: str | None
    refersion: RefersionKeys | None  # None: neither the store nor the config has a key pair
    dry_run: bool | None = None  # None: the config's rules.dry_run
    excluded_coupons: tuple[str, ...] | None = None  # None: the config's rules.excluded_coupons

    def fingerprint(self, service: str) -> str:
        """A one-way fingerprint of the credentials this store uses for ``service``."""
        if service == REFERSION:
            keys = self.refersion
            return fingerprint(keys.public_key if keys else None, keys.secret_key if keys else None)
        return fingerprint(self.access_token)

    def hook_token(self, secret: str) -> str:
        """The ``X-Bridge-Token`` this store's hooks send (see ``core.hooks.hook_token``)."""
        return hooks.hook_token(secret, self.store_hash, app=self.mode == APP)

    def policy(self, default: Policy) -> Policy:
        """The config's rules with this store's own settings applied."""
        changes = {}
        if self.dry_run is not None:
            changes["dry_run"] = self.dry_run
        if self.excluded_coupons is not None:
            changes["excluded_coupons"] = self.excluded_coupons
        return dataclasses.replace(default, **changes) if changes else default


def fingerprint(*secrets: str | None) -> str:
    """A short one-way fingerprint, to notice that credentials changed without storing them."""
    digest = hashlib.sha256("\x00".join(secret or "" for secret in secrets).encode()).hexdigest()
    return digest[:16]


def secret_hint(secret: str | None) -> str | None:
    """What a page may show of a stored secret: its last four characters at most."""
    if not secret:
        return None
    return f"sec_…{secret[-4:]}" if len(secret) >= 12 else "sec_…"


class StoreRegistry:
    """Looks stores up by hash."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self.vault = Vault(settings.server.encryption_keys)
        self._plain: dict[str, str] = {}  # ciphertext -> secret: Fernet is slow enough to matter per job

    @property
    def configured_hash(self) -> str | None:
        bc = self._settings.bigcommerce
        return bc.store_hash if bc.store_hash and bc.access_token else None

    def _decrypt(self, stored: str) -> str:
        plain = self._plain.get(stored)
        if plain is None:
            plain = self.vault.decrypt(stored)
            logs.redact(plain)  # before anything can log it
            if len(self._plain) > 1000:
                self._plain.clear()
            self._plain[stored] = plain
        return plain

    def _encrypt(self, secret: str) -> str:
        logs.redact(secret)
        return self.vault.encrypt(secret)

    def _mode(self, store_hash: str, row: dict | None) -> str | None:
        if store_hash == self.configured_hash:
            return API_ACCOUNT
        if row is not None and row["mode"] == APP and row["access_token"] and row["uninstalled_at"] is None:
            return APP
        return None

    def _store(self, store_hash: str, row: dict | None) -> Store | None:
        bc, ref = self._settings.bigcommerce, self._settings.refersion
        mode = self._mode(store_hash, row)
        if mode == API_ACCOUNT:
            token = bc.access_token
        elif mode == APP:
            token = self._decrypt(row["access_token"])
        else:
            return None
        keys = RefersionKeys(ref.public_key, ref.secret_key) if ref.public_key and ref.secret_key else None
        if row is not None and row["refersion_public_key"] and row["refersion_secret_key"]:
            keys = RefersionKeys(row["refersion_public_key"], self._decrypt(row["refersion_secret_key"]))
        coupons = json.loads(row["excluded_coupons"]) if row is not None and row["excluded_coupons"] is not None else None
        return Store(
            store_hash=store_hash,
            mode=mode,
            access_token=token,
            client_id=bc.client_id,
            refersion=keys,
            dry_run=bool(row["dry_run"]) if row is not None and row["dry_run"] is not None else None,
            excluded_coupons=tuple(coupons) if coupons is not None else None,
        )

    def get(self, db: Database | None, store_hash: str) -> Store | None:
        """The store with this hash, or None when the bridge has no credentials for it."""
        found = rows(db.execute("SELECT * FROM stores WHERE store_hash = ?", [store_hash])) if db is not None else []
        return self._store(store_hash, found[0] if found else None)

    def mode_of(self, db: Database, store_hash: str) -> str | None:
        """How the store is served (``APP`` or ``API_ACCOUNT``), or None when it is not: what
        ``get`` would say, without decrypting any secret (the webhook intake needs no more)."""
        found = rows(db.execute("SELECT mode, access_token, uninstalled_at FROM stores WHERE store_hash = ?", [store_hash]))
        return self._mode(store_hash, found[0] if found else None)

    def all(self, db: Database | None) -> list[Store]:
        """Every store the bridge serves now: the configured one first, then app installs by hash."""
        by_hash = {row["store_hash"]: row for row in rows(db.execute("SELECT * FROM stores ORDER BY store_hash"))} if db else {}
        hashes = [self.configured_hash] if self.configured_hash else []
        hashes += [store_hash for store_hash in by_hash if store_hash != self.configured_hash]
        stores = [self._store(store_hash, by_hash.get(store_hash)) for store_hash in hashes]
        return [store for store in stores if store is not None]

    # --- writes (each in the caller's transaction) ---------------------------------------

    def install(self, db: Database, *, store_hash: str, access_token: str, scopes: list[str], user: dict, owner: dict, now: float) -> None:
        """Record an app install (or a re-install: a new token, settings kept) and its installing user."""
        db.execute(
            """
            INSERT INTO stores (store_hash, mode, access_token, scopes, installed_by, installed_at, uninstalled_at, updated_at)
            VALUES (:hash, :mode, :token, :scopes, :by, :now, NULL, :now)
            ON CONFLICT (store_hash) DO UPDATE SET
                mode = excluded.mode, access_token = excluded.access_token, scopes = excluded.scopes,
                installed_by = excluded.installed_by, installed_at = excluded.installed_at, uninstalled_at = NULL,
                updated_at = excluded.updated_at
            """,
            {
                "hash": store_hash,
                "mode": APP,
                "token": self._encrypt(access_token),
                "scopes": " ".join(scopes),
                "by": user.get("email"),
                "now": now,
            },
        )
        add_user(db, store_hash=store_hash, user_id=user["id"], email=user.get("email"), owner=user.get("id") == owner.get("id"), now=now)

    def uninstall(self, db: Database, *, store_hash: str, now: float) -> bool:
        """The app was uninstalled: forget its token and users; False when it was not installed (call in a transaction).

        The configured store stays served with the config's API account whatever happens
        to an app install of it: only the app's token and users go, its work is not held.
        """
        if store_hash != self.configured_hash:
            return uninstall(db, store_hash=store_hash, now=now)
        cursor = db.execute(
            "UPDATE stores SET access_token = NULL, updated_at = ? WHERE store_hash = ? AND mode = ?", [now, store_hash, APP]
        )
        db.execute("DELETE FROM store_users WHERE store_hash = ?", [store_hash])
        return cursor.rowcount > 0

    def save_settings(
        self,
        db: Database,
        *,
        store_hash: str,
        now: float,
        public_key=KEEP,
        secret_key=KEEP,
        dry_run=KEEP,
        excluded_coupons=KEEP,
    ) -> None:
        """Change a store's own settings; ``None`` returns one to the config's default.

        The public and secret key are one pair: clearing one clears both.
        """
        mode = API_ACCOUNT if store_hash == self.configured_hash else APP
        db.execute(
            "INSERT INTO stores (store_hash, mode, updated_at) VALUES (?, ?, ?) ON CONFLICT (store_hash) DO NOTHING",
            [store_hash, mode, now],
        )
        changes: dict = {"updated_at": now}
        if public_key is not KEEP:
            changes["refersion_public_key"] = public_key
        if secret_key is not KEEP:
            changes["refersion_secret_key"] = self._encrypt(secret_key) if secret_key is not None else None
        if public_key is None or secret_key is None:
            changes["refersion_public_key"] = changes["refersion_secret_key"] = None
        if dry_run is not KEEP:
            changes["dry_run"] = None if dry_run is None else int(bool(dry_run))
        if excluded_coupons is not KEEP:
            changes["excluded_coupons"] = None if excluded_coupons is None else json.dumps(list(excluded_coupons))
        assignments = ", ".join(f"{column} = :{column}" for column in changes)
        db.execute(f"UPDATE stores SET {assignments} WHERE store_hash = :store_hash", {**changes, "store_hash": store_hash})

    def settings_of(self, db: Database, store_hash: str) -> dict:
        """A store's own settings as a page may show them (the secret as a hint only) and the defaults."""
        found = rows(db.execute("SELECT * FROM stores WHERE store_hash = ?", [store_hash]))
        row = found[0] if found else {}
        policy, ref = self._settings.rules, self._settings.refersion
        secret = row.get("refersion_secret_key")
        coupons = row.get("excluded_coupons")
        return {
            "store_hash": store_hash,
            "refersion_public_key": row.get("refersion_public_key"),
            "refersion_secret_hint": secret_hint(self._decrypt(secret)) if secret else None,
            "dry_run": bool(row["dry_run"]) if row.get("dry_run") is not None else None,
            "excluded_coupons": json.loads(coupons) if coupons is not None else None,
            "default_public_key": ref.public_key,
            "default_dry_run": policy.dry_run,
            "default_excluded_coupons": list(policy.excluded_coupons),
        }

    def rotate_secrets(self, db: Database) -> int:
        """Re-encrypt every stored secret with the first key; returns how many (call in a transaction)."""
        count = 0
        for row in rows(db.execute("SELECT store_hash, access_token, refersion_secret_key FROM stores")):
            changes = {column: self.vault.rotate(row[column]) for column in ("access_token", "refersion_secret_key") if row[column]}
            if changes:
                assignments = ", ".join(f"{column} = :{column}" for column in changes)
                db.execute(f"UPDATE stores SET {assignments} WHERE store_hash = :hash", {**changes, "hash": row["store_hash"]})
                count += len(changes)
        self._plain.clear()
        return count

    def check_secrets(self, db: Database) -> int:
        """Decrypt every stored secret once; returns how many.

        :raise VaultError: a secret is stored and ``server.encryption_key`` is missing or cannot read it.
        """
        stored = [
            value
            for row in rows(db.execute("SELECT access_token, refersion_secret_key FROM stores"))
            for value in (row["access_token"], row["refersion_secret_key"])
            if value
        ]
        for value in stored:
            self._decrypt(value)
        return len(stored)


def uninstall(db: Database, *, store_hash: str, now: float) -> bool:
    """Forget an app install's token and users; its queued work is kept but no longer claimed.

    Returns False when the store was not installed as an app.
    """
    cursor = db.execute(
        "UPDATE stores SET access_token = NULL, uninstalled_at = :now, updated_at = :now WHERE store_hash = :hash AND mode = :app",
        {"now": now, "hash": store_hash, "app": APP},
    )
    db.execute("DELETE FROM store_users WHERE store_hash = ?", [store_hash])
    return cursor.rowcount > 0


def add_user(db: Database, *, store_hash: str, user_id: int, email: str | None, owner: bool, now: float) -> None:
    db.execute(
        """
        INSERT INTO store_users (store_hash, user_id, email, is_owner, added_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (store_hash, user_id) DO UPDATE SET email = excluded.email, is_owner = excluded.is_owner
        """,
        [store_hash, user_id, email, int(owner), now],
    )


def remove_user(db: Database, *, store_hash: str, user_id: int) -> bool:
    return db.execute("DELETE FROM store_users WHERE store_hash = ? AND user_id = ?", [store_hash, user_id]).rowcount > 0


def has_user(db: Database, *, store_hash: str, user_id: int) -> bool:
    """Whether this user of an installed store may still open its page."""
    found = db.execute(
        """
        SELECT 1 FROM store_users JOIN stores USING (store_hash)
        WHERE store_hash = ? AND user_id = ? AND stores.uninstalled_at IS NULL
        """,
        [store_hash, user_id],
    ).fetchone()
    return found is not None


def installs(db: Database) -> list[dict]:
    """Every app install, current or uninstalled, without its secrets (for pages and the CLI)."""
    return rows(
        db.execute(
            """
            SELECT store_hash, scopes, installed_by, installed_at, uninstalled_at FROM stores
            WHERE mode = ? AND installed_at IS NOT NULL ORDER BY store_hash
            """,
            [APP],
        )
    )


# --- Install state: the app callbacks and the worker ask these ----------------------------------


def installed_at(db: Database, store_hash: str) -> float | None:
    """When the store last installed the app, or None when it never did."""
    found = db.execute("SELECT installed_at FROM stores WHERE store_hash = ? AND mode = ?", [store_hash, APP]).fetchone()
    return found[0] if found else None


def is_installed(db: Database, store_hash: str) -> bool:
    """Whether the app is installed on the store now (uninstalled stores are not)."""
    found = db.execute(
        "SELECT 1 FROM stores WHERE store_hash = ? AND mode = ? AND access_token IS NOT NULL AND uninstalled_at IS NULL",
        [store_hash, APP],
    ).fetchone()
    return found is not None


def spend_jwt(db: Database, *, jti: str, expires_at: float, now: float) -> bool:
    """Record a signed payload's id as used; False when it was used before (call in a transaction).

    BigCommerce signs load, uninstall and remove-user payloads alike: a payload that worked
    once must not work again, on the same callback or another one.
    """
    db.execute("DELETE FROM used_jwts WHERE expires_at < ?", [now])
    cursor = db.execute("INSERT INTO used_jwts (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING", [jti, expires_at])
    return cursor.rowcount > 0


def is_uninstalled(db: Database, store_hash: str) -> bool:
    """Whether the store uninstalled the app (its work is held until a re-install)."""
    found = db.execute("SELECT 1 FROM stores WHERE store_hash = ? AND uninstalled_at IS NOT NULL", [store_hash]).fetchone()
    return found is not None
