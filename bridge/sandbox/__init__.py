"""The bridge's outside world on 127.0.0.1: a BigCommerce API and Refersion, as real HTTP
servers. The demo and the tests both use them (see docs/sandbox.md).

    with Sandbox() as sandbox:
        sandbox.bigcommerce.add_order(101, lines=[{"sku": "A", "qty": 1, "price": "10.00"}])
        settings = load_settings(None, environ=sandbox.environ(database_path="bridge.sqlite3"))
"""

from __future__ import annotations

from bridge.sandbox.bigcommerce import ALL_SCOPES, ORDER_SCOPES, SandboxBigCommerce
from bridge.sandbox.refersion import SandboxRefersion

STORE_HASH = "abc123"
ACCESS_TOKEN = "bc-token-0123456789abcdef"
PUBLIC_KEY = "pub_test_4a2b"
SECRET_KEY = "sec_test_9f8e7d6c5b4a"


class Sandbox:
    """Both servers, started together; gives the URLs and credentials a bridge config needs."""

    def __init__(
        self,
        *,
        store_hash: str = STORE_HASH,
        access_token: str = ACCESS_TOKEN,
        public_key: str = PUBLIC_KEY,
        secret_key: str = SECRET_KEY,
        scopes: list[str] | None = None,
        require_https_destinations: bool = True,
    ):
        self.store_hash = store_hash
        self.access_token = access_token
        self.bigcommerce = SandboxBigCommerce(
            store_hash, access_token, scopes=scopes, require_https_destinations=require_https_destinations
        )
        self.refersion = SandboxRefersion(public_key, secret_key)

    def start(self) -> Sandbox:
        self.bigcommerce.start()
        try:
            self.refersion.start()
        except BaseException:
            self.bigcommerce.stop()
            raise
        return self

    def stop(self) -> None:
        self.refersion.stop()
        self.bigcommerce.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def urls(self) -> dict[str, str]:
        """``{"bigcommerce.api_url": ..., "bigcommerce.login_url": ..., "refersion.orders_url": ..., "refersion.api_url": ...}``."""
        return {
            "bigcommerce.api_url": self.bigcommerce.url,
            "bigcommerce.login_url": self.bigcommerce.url,
            "refersion.orders_url": self.refersion.orders_url,
            "refersion.api_url": self.refersion.api_url,
        }

    def environ(self, **extra: str) -> dict[str, str]:
        """``BRIDGE_*`` variables pointing a bridge at the sandbox; ``extra`` adds
        ``section_key=value`` pairs (``database_path=...``, ``webhooks_secret=...``)."""
        env = {f"BRIDGE_{name.replace('.', '_').upper()}": url for name, url in self.urls.items()}
        env.update(
            {
                "BRIDGE_BIGCOMMERCE_STORE_HASH": self.store_hash,
                "BRIDGE_BIGCOMMERCE_ACCESS_TOKEN": self.access_token,
                "BRIDGE_REFERSION_PUBLIC_KEY": self.refersion.public_key,
                "BRIDGE_REFERSION_SECRET_KEY": self.refersion.secret_key,
            }
        )
        env.update({f"BRIDGE_{name.upper()}": str(value) for name, value in extra.items()})
        return env


__all__ = ["ALL_SCOPES", "ORDER_SCOPES", "Sandbox", "SandboxBigCommerce", "SandboxRefersion"]
