"""``GET /healthz``: is the bridge able to work, and is anything stuck."""

from __future__ import annotations

import logging
import sqlite3
import time

from flask import Blueprint, Response, jsonify

from bridge.storage.ledger import health_snapshot
from bridge.web.database import get_db

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Database reachable, queue depth, age of the oldest pending delivery."""
    try:
        snapshot = health_snapshot(get_db(), now=time.time())
    except sqlite3.Error:
        log.exception("Health check could not read the database")
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok", **snapshot), 200
