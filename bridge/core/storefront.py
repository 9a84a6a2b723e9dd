"""Which web origins may post a store's cart ids to ``POST /storefront/cart``. Pure.

An origin is ``scheme://host[:port]`` in lower case, the form browsers send in ``Origin``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

_HOST = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: object) -> str | None:
    """The origin of an absolute http(s) URL or a bare host name; None when it is neither."""
    if not isinstance(url, str) or not url.strip():
        return None
    text = url.strip()
    if "://" not in text:
        text = f"https://{text}"  # /v2/store's ``domain`` is a bare host name
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
    if scheme not in DEFAULT_PORTS or not _HOST.fullmatch(host) or parts.username is not None:
        return None
    return f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def store_origins(store_info: Mapping, store_hash: str) -> list[str]:
    """The store's own storefront origins from its ``/v2/store`` answer, sorted.

    Its ``domain`` and ``secure_URL`` (BigCommerce spells it so; the sandbox ``secure_url``),
    and the permanent ``store-{hash}.mybigcommerce.com`` address every store keeps; the
    domain over http too when the store does not serve every page over https.
    """
    candidates = [store_info.get("domain"), store_info.get("secure_URL"), store_info.get("secure_url")]
    candidates.append(f"https://store-{store_hash.lower()}.mybigcommerce.com")
    features = store_info.get("features")
    if isinstance(features, Mapping) and features.get("sitewidehttps_enabled") is False and isinstance(store_info.get("domain"), str):
        candidates.append(f"http://{store_info['domain'].strip()}")  # pages outside checkout are served over http
    return sorted({origin for origin in map(origin_of, candidates) if origin})
