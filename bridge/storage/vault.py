"""Secrets at rest: what the database holds of an access token or a Refersion secret key.

Fernet (AES-128-CBC with an HMAC-SHA256, from ``cryptography``) under the keys of
``server.encryption_key``: the first key encrypts, every key decrypts, so a new key listed
first starts a rotation and ``bridge keys rotate`` finishes it. The database file alone
never reveals a secret; a wrong key is told apart from a tampered value by trying them all.
"""

from __future__ import annotations

import base64
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SETTING = "server.encryption_key"


class VaultError(Exception):
    """Secrets cannot be written or read with the configured keys; the message names the setting."""


def generate_key() -> str:
    """A fresh key for ``server.encryption_key``: URL-safe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


class Vault:
    """Encrypts and decrypts the secrets the database holds."""

    def __init__(self, keys: tuple[str, ...] | list[str]):
        self._fernet = MultiFernet([Fernet(key) for key in keys]) if keys else None

    @property
    def configured(self) -> bool:
        return self._fernet is not None

    def encrypt(self, secret: str) -> str:
        if self._fernet is None:
            raise VaultError(f"{SETTING} is not set, and secrets cannot be stored without it: generate one with `bridge keys generate`.")
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def decrypt(self, stored: str) -> str:
        if self._fernet is None:
            raise VaultError(
                f"the database holds encrypted secrets but {SETTING} is not set: "
                "set it to the key (or list of keys) they were encrypted with."
            )
        try:
            return self._fernet.decrypt(stored.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise VaultError(
                f"{SETTING} cannot decrypt the secrets stored in the database: list the key they were "
                "encrypted with (a new key goes first, the old ones after it)."
            ) from None

    def rotate(self, stored: str) -> str:
        """The same secret encrypted with the first key (readable with any listed key)."""
        if self._fernet is None:
            raise VaultError(f"{SETTING} is not set: nothing can be re-encrypted.")
        try:
            return self._fernet.rotate(stored.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise VaultError(f"{SETTING} cannot decrypt a secret stored in the database: list the key it was encrypted with.") from None
