"""The store registry: every store the bridge serves, and with which credentials.

Two modes. ``api_account``: the store-level API account in ``[bigcommerce]`` of the
config, reporting with the key pair in ``[refersion]``. ``app``: a store that installed
the bridge as a BigCommerce app; its row in ``stores`` holds its access token and may
hold its own Refersion key pair (the config's pair is the default). The web and the
worker ask this registry about stores, never the settings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sqlite_utils import Database

from bridge.config import Settings

API_ACCOUNT, APP = "api_account", "app"
BIGCOMMERCE, REFERSION = "bigcommerce", "refersion"


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
    refersion: RefersionKeys

    def fingerprint(self, service: str) -> str:
        """A one-way fingerprint of the credentials this store uses for ``service``."""
        if service == REFERSION:
            return fingerprint(self.refersion.public_key, self.refersion.secret_key)
        return fingerprint(self.access_token)


def fingerprint(*secrets: str | None) -> str:
    """A short one-way fingerprint, to notice that credentials changed without storing them."""
    digest = hashlib.sha256("\x00".join(secret or "" for secret in secrets).encode()).hexdigest()
    return digest[:16]


class StoreRegistry:
    """Looks stores up by hash."""

    def __init__(self, settings: Settings):
        self._settings = settings

    def _default_refersion(self) -> RefersionKeys:
        ref = self._settings.refersion
        return RefersionKeys(ref.public_key, ref.secret_key)

    def _configured(self) -> Store | None:
        bc = self._settings.bigcommerce
        if not (bc.store_hash and bc.access_token):
            return None
        return Store(bc.store_hash, API_ACCOUNT, bc.access_token, bc.client_id, self._default_refersion())

    def get(self, db: Database | None, store_hash: str) -> Store | None:
        """The store with this hash, or None when the bridge has no credentials for it."""
        return next((store for store in self.all(db) if store.store_hash == store_hash), None)

    def all(self, db: Database | None) -> list[Store]:
        """Every store the bridge serves now."""
        # App installs join here with the install flow, which stores their (encrypted)
        # access tokens in the ``stores`` table; until then only the configured account serves.
        return [store for store in [self._configured()] if store is not None]
