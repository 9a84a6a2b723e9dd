"""Chore ``storefront_origins``: read each store's own domains, the origins allowed to post cart ids.

Only while ``storefront.allowed_origins`` is empty (a configured list is used as it is). One
``GET /v2/store`` per store a day; the chore looks every CHECK_SECONDS so a new install is
read soon after it is first scheduled, and a failed read is tried again after RETRY_SECONDS.
A 403 (the API account lacks Information & Settings) is recorded with its fix, not a pause:
reading orders does not need that scope.
"""

from __future__ import annotations

import logging

from bridge.clients.bigcommerce import BigCommerceError
from bridge.core.storefront import store_origins
from bridge.storage import pauses
from bridge.storage import storefront as storefront_rows
from bridge.storage.stores import BIGCOMMERCE, Store
from bridge.worker.chores import CHORES, Chore
from bridge.worker.context import Context

log = logging.getLogger(__name__)

CHECK_SECONDS = 600.0  # how often the chore looks; it calls BigCommerce only when a read is due
READ_EVERY_SECONDS = 86_400.0
RETRY_SECONDS = 3_600.0
INFORMATION_SCOPE = "store_v2_information_read_only"


def interval(settings) -> float | None:
    return None if settings.storefront.allowed_origins else CHECK_SECONDS


def run(ctx: Context, store: Store, state: dict) -> dict:
    now = ctx.clock()
    if pauses.held_back(ctx.db, store_hash=store.store_hash, service=BIGCOMMERCE, now=now):
        return state
    read_at, tried_at = state.get("read_at"), state.get("tried_at")
    if (read_at is not None and now - read_at < READ_EVERY_SECONDS) or (tried_at is not None and now - tried_at < RETRY_SECONDS):
        return state
    try:
        origins = store_origins(ctx.bigcommerce(store).store_info(), store.store_hash)
    except BigCommerceError as error:
        if error.status != 403:
            raise  # the chore runner classifies it (a 401 pauses the store, a 429 holds it)
        problem = (
            f"BigCommerce refused to give the store's domains ({error}): give the API account the scope "
            f"Information & Settings: read-only ({INFORMATION_SCOPE}), or set storefront.allowed_origins"
        )
        ctx.write(
            f"the storefront origins of store {store.store_hash}",
            lambda: storefront_rows.record_origins(ctx.db, store_hash=store.store_hash, origins=None, now=now, error=problem),
        )
        log.warning("Storefront origins of store %s: %s", store.store_hash, problem)
        return {**state, "tried_at": now}
    ctx.write(
        f"the storefront origins of store {store.store_hash}",
        lambda: storefront_rows.record_origins(ctx.db, store_hash=store.store_hash, origins=origins, now=now),
    )
    log.info("Storefront origins of store %s: %s", store.store_hash, ", ".join(origins))
    return {"read_at": now}


CHORE = Chore(name="storefront_origins", per_store=True, interval=interval, run=run)
CHORES.append(CHORE)
