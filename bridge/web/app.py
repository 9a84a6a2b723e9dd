"""The web half: the Flask application factory, ``/healthz`` and error pages."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from flask import Flask, Response, current_app, g, jsonify, render_template, request
from sqlite_utils import Database
from werkzeug.exceptions import HTTPException

from bridge.config import Settings
from bridge.storage import db as database
from bridge.storage.ledger import health_snapshot

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
JSON_PREFIXES = ("/webhooks/", "/api/", "/healthz")
# Well under gunicorn's 30 s worker timeout: a request stuck behind a lock answers 503
# (BigCommerce retries) instead of being killed mid-way.
REQUEST_BUSY_TIMEOUT = 10.0


def get_db() -> Database:
    """This request's database connection, opened on first use."""
    if "db" not in g:
        g.db = database.connect(current_app.config["BRIDGE_SETTINGS"].database.path, migrate=False, busy_timeout=REQUEST_BUSY_TIMEOUT)
    return g.db


def _close_db(exception: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def _wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES) or request.accept_mimetypes.best == "application/json"


def _handle_http_error(error: HTTPException) -> tuple[Response | str, int]:
    if _wants_json():
        return jsonify(error=error.description), error.code
    return render_template("error.html", status=error.code, title=error.name, message=error.description), error.code


def _handle_unexpected(error: Exception) -> tuple[Response | str, int]:
    log.exception("Unhandled error on %s %s", request.method, request.path)
    message = "Something went wrong inside the bridge; the details are in its log."
    if _wants_json():
        return jsonify(error=message), 500
    return render_template("error.html", status=500, title="Internal error", message=message), 500


def healthz() -> tuple[Response, int]:
    """Database reachable, queue depth, age of the oldest pending delivery."""
    try:
        snapshot = health_snapshot(get_db(), now=time.time())
    except sqlite3.Error:
        log.exception("Health check could not read the database")
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok", **snapshot), 200


def create_app(settings: Settings) -> Flask:
    """Build the web application for validated ``settings``."""
    from bridge.web import webhooks

    app = Flask(__name__, template_folder=str(TEMPLATES))
    app.config.update(
        BRIDGE_SETTINGS=settings,
        # One byte over the limit, so the webhook view can tell a streamed body that
        # reaches it (too long) from one of exactly 64 KiB.
        MAX_CONTENT_LENGTH=webhooks.MAX_BODY_BYTES + 1,
        JSON_SORT_KEYS=False,
    )
    database.connect(settings.database.path).close()  # create and migrate before the first request
    app.teardown_appcontext(_close_db)
    app.register_blueprint(webhooks.bp)
    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_error_handler(Exception, _handle_unexpected)
    return app
