"""``bridge send-test-webhook``: post a BigCommerce-shaped webhook to a running bridge, and say what came back."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid

import click
import requests

from bridge.cli.common import command_name, load_settings_or_exit
from bridge.cli.orders import print_story
from bridge.clients.errors import causes, reason
from bridge.config import Settings
from bridge.core.hooks import hook_token
from bridge.storage import db as database
from bridge.storage import history

STATUS_UPDATED = "store/order/statusUpdated"
CART_CONVERTED = "store/cart/converted"
SCOPES = (STATUS_UPDATED, "store/order/created", "store/order/updated", "store/order/refund/created", CART_CONVERTED)
DEFAULT_STATUS = 11  # Awaiting Fulfillment: a paid order
TIMEOUT = 10.0  # seconds for the POST
FOLLOW_SECONDS = 30.0
FOLLOW_INTERVAL = 0.5
UNSETTLED = ("not_evaluated_yet", "queued")  # the worker has not decided yet, or is sending the report now


def build_webhook(scope: str, order_id: int, *, store_hash: str, now: float, status: int = DEFAULT_STATUS, cart_id: str = "") -> dict:
    """A callback body shaped as BigCommerce sends it (reference/bigcommerce.md §1.4)."""
    if scope == STATUS_UPDATED:
        data = {"type": "order", "id": order_id, "status": {"previous_status_id": 0, "new_status_id": status}}
    elif scope == "store/order/refund/created":
        data = {"type": "order", "id": order_id, "refund": {"refund_id": 1}}
    elif scope == CART_CONVERTED:
        data = {"type": "cart", "id": cart_id, "orderId": order_id}
    else:
        data = {"type": "order", "id": order_id}
    return {
        "scope": scope,
        "store_id": "0",  # BigCommerce's numeric store id; the bridge goes by the producer's hash
        "data": data,
        "hash": hashlib.sha1(json.dumps(data, separators=(",", ":")).encode()).hexdigest(),
        "created_at": int(now),
        "producer": f"stores/{store_hash}",
    }


def default_url(settings: Settings) -> str:
    """``server.public_url`` when set, else where ``bridge serve`` listens with this config."""
    if settings.server.public_url:
        return settings.server.public_url + "/webhooks/bigcommerce"
    host = settings.server.host
    if host in ("0.0.0.0", "*", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}/webhooks/bigcommerce"


def _error_of(response: requests.Response) -> str:
    """The bridge's JSON ``error``; else what the answer was, in a few words."""
    try:
        found = response.json()
    except ValueError:
        found = None
    if isinstance(found, dict) and isinstance(found.get("error"), str):
        return found["error"]
    if response.status_code == 404:
        return "nothing at that path (the bridge takes webhooks at /webhooks/bigcommerce)"
    kind = response.headers.get("Content-Type", "").split(";")[0].strip()
    if kind == "text/html":
        return f"an HTML page of {len(response.content)} bytes, not the bridge's answer"
    text = " ".join(response.text.split())
    return (text[:200] + ("…" if len(text) > 200 else "")) if text else "(empty body)"


@click.command(name="send-test-webhook")
@click.argument("order_id", type=click.IntRange(1))
@click.option("--scope", type=click.Choice(SCOPES), default=STATUS_UPDATED, show_default=True, help="Which BigCommerce event to send.")
@click.option(
    "--status", type=click.IntRange(0), default=None, help=f"new_status_id of a statusUpdated event [default: {DEFAULT_STATUS}, paid]."
)
@click.option("--cart-id", help="The cart id of a store/cart/converted event [default: a random UUID].")
@click.option("--store", "store_hash", help="Store hash to send as [default: bigcommerce.store_hash].")
@click.option("--url", help="Where to post [default: server.public_url, else server.host:port, + /webhooks/bigcommerce].")
@click.option("--follow", is_flag=True, help=f"Then wait up to {FOLLOW_SECONDS:.0f} s for the worker's decision; print the order's story.")
@click.pass_context
def send_test_webhook(
    ctx: click.Context,
    order_id: int,
    scope: str,
    status: int | None,
    cart_id: str | None,
    store_hash: str | None,
    url: str | None,
    follow: bool,
) -> None:
    """Post a correctly authenticated BigCommerce-shaped webhook to a running bridge and say what came back."""
    if status is not None and scope != STATUS_UPDATED:
        raise click.UsageError(f"--status only goes with --scope {STATUS_UPDATED}")
    if cart_id is not None and scope != CART_CONVERTED:
        raise click.UsageError(f"--cart-id only goes with --scope {CART_CONVERTED}")
    if follow and scope == CART_CONVERTED:
        raise click.UsageError(f"--follow needs an order scope: {CART_CONVERTED} only links a cart to the order")
    settings = load_settings_or_exit(ctx)
    store_hash = store_hash or settings.bigcommerce.store_hash
    if not store_hash:
        click.echo("No store to send as: set bigcommerce.store_hash in the config, or pass --store HASH.", err=True)
        ctx.exit(2)
    if not re.fullmatch(r"[A-Za-z0-9]{1,64}", store_hash):
        raise click.BadParameter("a store hash is letters and digits only", param_hint="--store")
    url = url or default_url(settings)
    body = build_webhook(
        scope,
        order_id,
        store_hash=store_hash,
        now=time.time(),
        status=DEFAULT_STATUS if status is None else status,
        cart_id=cart_id or str(uuid.uuid4()),
    )
    sent = f"Sent {scope} for order #{order_id} to {url}"
    try:
        response = requests.post(
            url,
            data=json.dumps(body, separators=(",", ":")),
            headers={"Content-Type": "application/json", "X-Bridge-Token": _token_for(settings, store_hash)},
            timeout=TIMEOUT,
            allow_redirects=False,  # a redirect would carry the token somewhere else
        )
    except requests.ConnectTimeout:
        click.echo(f"Could not reach {url}: no connection within {TIMEOUT:.0f} s.", err=True)
        ctx.exit(1)
    except requests.Timeout:
        click.echo(f"{url} did not answer within {TIMEOUT:.0f} s.", err=True)
        ctx.exit(1)
    except requests.RequestException as error:
        if any(isinstance(cause, ConnectionRefusedError) for cause in causes(error)):
            click.echo(f"Nothing listens at {url}; start it with `{command_name()} serve`.", err=True)
        else:
            click.echo(f"Could not send to {url}: {reason(error)}", err=True)
        ctx.exit(1)
    if response.status_code == 401:
        click.echo(f"{sent}: 401, the bridge refused the token: webhooks.secret differs from the running bridge's.", err=True)
        ctx.exit(1)
    if not 200 <= response.status_code < 300:
        click.echo(f"{sent}: {response.status_code}, refused: {_error_of(response)}", err=True)
        ctx.exit(1)
    click.echo(f"{sent}: {response.status_code}, stored.")
    if follow:
        _follow(ctx, settings, store_hash, order_id)


def _follow(ctx: click.Context, settings: Settings, store_hash: str, order_id: int) -> None:
    """Poll this config's database until the worker decided about the order, then print its story."""
    deadline = time.monotonic() + FOLLOW_SECONDS
    db = database.connect(settings.database.path)
    try:
        while True:
            story = history.order_story(db, store_hash=store_hash, order_id=order_id)
            codes = {reason["code"] for reason in story["reasons"]} if story else set()
            if story and not (story["decision"] == history.WAITING and codes & set(UNSETTLED)):
                print_story(story)
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(FOLLOW_INTERVAL)
    finally:
        db.close()
    later = f"`{command_name()} orders why {order_id}`"
    if story is None:
        click.echo(f"Order #{order_id} is not in {settings.database.path}: does the bridge at that URL use another database?", err=True)
    elif "queued" in codes:
        click.echo(f"Refersion has not taken the report yet after {FOLLOW_SECONDS:g} s (it is queued): look later with {later}.", err=True)
    else:
        click.echo(f"No decision after {FOLLOW_SECONDS:g} s: is the worker running? Look later with {later}.", err=True)
    ctx.exit(1)


def _token_for(settings: Settings, store_hash: str) -> str:
    """What the store's own hooks would send: webhooks.secret for the configured store, an app store's derived token otherwise."""
    return hook_token(settings.webhooks.secret, store_hash, app=store_hash != settings.bigcommerce.store_hash)
