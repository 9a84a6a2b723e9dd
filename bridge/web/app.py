"""The web application factory and its error pages."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from bridge.config import Settings
from bridge.storage import db as database
from bridge.storage.stores import StoreRegistry
from bridge.web import app_install, auth, health, metrics, pages, refersion_hooks, status, storefront, webhooks
from bridge.web import settings as settings_page
from bridge.web.database import close_db

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
JSON_PREFIXES = ("/webhooks/", "/api/", "/healthz", "/storefront/cart")


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


def create_app(settings: Settings) -> Flask:
    """Build the web application for validated ``settings``."""
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=str(STATIC))
    app.config.update(
        BRIDGE_SETTINGS=settings,
        BRIDGE_STORES=StoreRegistry(settings),
        # One byte over the limit, so the webhook view can tell a streamed body that
        # reaches it (too long) from one of exactly 64 KiB.
        MAX_CONTENT_LENGTH=webhooks.MAX_BODY_BYTES + 1,
        JSON_SORT_KEYS=False,
    )
    auth.init_app(app, settings)  # sessions, /login, CSRF check, security headers
    db = database.connect(settings.database.path)  # create and migrate before the first request
    try:
        app.config["BRIDGE_STORES"].check_secrets(db)  # refuse to start with stored secrets it cannot read
    finally:
        db.close()
    app.teardown_appcontext(close_db)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(status.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(app_install.bp)
    app.register_blueprint(settings_page.bp)
    app.register_blueprint(refersion_hooks.bp)
    storefront.init_app(app, settings)  # the blueprint with its per-address rate limit
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_error_handler(Exception, _handle_unexpected)
    app.wsgi_app = webhooks.FastIntake(app, app.wsgi_app)
    return app
