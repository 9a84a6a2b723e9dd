"""``GET /healthz``: is the bridge able to work, and is anything stuck."""

from __future__ import annotations

import logging
import sqlite3
import time

from flask import Blueprint, Response, current_app, jsonify

from bridge.storage.health import FAILING, health_snapshot, write_fault
from bridge.web.database import get_db

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """``ok``, ``degraded`` (anything dead or paused) or ``failing`` (503: the database cannot be
    read, or cannot take a write: full, read-only or locked), with the facts."""
    path = current_app.config["BRIDGE_SETTINGS"].database.path
    try:
        db = get_db()
        snapshot = health_snapshot(db, now=time.time())
        fault = write_fault(db, path)
    except (sqlite3.Error, OSError):
        log.exception("Health check could not read the database")
        fault = write_fault(None, path)
        database, problem = fault if fault else ("unreachable", "the database cannot be read")
        return jsonify(status=FAILING, database=database, problems=[problem]), 503
    if fault:
        snapshot.update(status=FAILING, database=fault[0], problems=[fault[1], *snapshot["problems"]])
        return jsonify(snapshot), 503
    return jsonify(snapshot), 200
