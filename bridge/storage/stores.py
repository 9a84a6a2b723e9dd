"""Which stores the bridge serves, and with which credentials.

Single-store mode: the store-level API account in ``[bigcommerce]`` and the key pair
in ``[refersion]``. App installs (OAuth) will add stores kept in the database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from bridge.config import Settings


@dataclass(frozen=True)
class StoreAccess:
    store_hash: str
    access_token: str = field(repr=False)
    client_id: str | None = None


def store_access(settings: Settings, store_hash: str) -> StoreAccess | None:
    """The BigCommerce credentials for a store, or None when the bridge has none."""
    bc = settings.bigcommerce
    if bc.store_hash and bc.access_token and bc.store_hash == store_hash:
        return StoreAccess(store_hash, bc.access_token, bc.client_id)
    return None


def fingerprint(*secrets: str | None) -> str:
    """A short one-way fingerprint, to notice that credentials changed without storing them."""
    digest = hashlib.sha256("\x00".join(secret or "" for secret in secrets).encode()).hexdigest()
    return digest[:16]


def credentials_fingerprint(settings: Settings, store_hash: str, service: str) -> str | None:
    """Fingerprint of the credentials a store uses for ``service`` ('bigcommerce' or 'refersion')."""
    if service == "refersion":
        return fingerprint(settings.refersion.public_key, settings.refersion.secret_key)
    access = store_access(settings, store_hash)
    return fingerprint(access.access_token) if access else None
