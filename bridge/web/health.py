"""``GET /healthz``: is the bridge able to work, and is anything stuck."""

from __future__ import annotations

import logging
import sqlite3
import time

from flask import Blueprint, Response, jsonify

from bridge.storage.health import FAILING, health_snapshot
from bridge.web.database import get_db

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """``ok``, ``degraded`` (anything dead or paused) or ``failing`` (503: no database), with the facts."""
    try:
        snapshot = health_snapshot(get_db(), now=time.time())
    except (sqlite3.Error, OSError):
        log.exception("Health check could not read the database")
        return jsonify(status=FAILING, database="unreachable", problems=["the database cannot be read"]), 503
    return jsonify(snapshot), 200
