"""The web's database access: one connection per request, opened on first use, and the
process's group-commit writer that stores webhook events."""

from __future__ import annotations

import threading

from flask import Flask, current_app, g
from sqlite_utils import Database

from bridge.storage import db as database
from bridge.storage.group_commit import GroupCommit
from bridge.web.intake import IntakeClient

# A request stuck behind a lock answers 503 (BigCommerce retries) after this long. BigCommerce
# publishes no receiver timeout and asks for an answer "immediately"; common senders cut at 5 s.
# Normal lock waits are milliseconds (every transaction is short), so a longer wait means a stuck
# writer, and an answered 503 (retried in 60 s) beats a hung connection holding a web thread.
REQUEST_BUSY_TIMEOUT = 3.0
_intake_lock = threading.Lock()


def get_db() -> Database:
    """This request's database connection, opened on first use."""
    if "db" not in g:
        g.db = database.connect(current_app.config["BRIDGE_SETTINGS"].database.path, migrate=False, busy_timeout=REQUEST_BUSY_TIMEOUT)
    return g.db


def close_db(exception: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def intake(app: Flask) -> GroupCommit:
    """The app's group-commit writer for webhook events (made on first use, so after gunicorn's fork)."""
    writer = app.extensions.get("bridge_intake")
    if writer is None:
        with _intake_lock:
            writer = app.extensions.get("bridge_intake")
            if writer is None:
                path = app.config["BRIDGE_SETTINGS"].database.path
                writer = app.extensions["bridge_intake"] = GroupCommit(path, busy_timeout=REQUEST_BUSY_TIMEOUT)
    return writer


INTAKE_ADDRESS = "BRIDGE_INTAKE_ADDRESS"  # app config: the socket of the deployment's intake writer


def intake_client(app: Flask) -> IntakeClient | None:
    """The app's connection to the deployment's intake writer, or None when none was started."""
    address = app.config.get(INTAKE_ADDRESS)
    if address is None:
        return None
    client = app.extensions.get("bridge_intake_client")
    if client is None:
        with _intake_lock:
            client = app.extensions.setdefault("bridge_intake_client", IntakeClient(address))
    return client
