"""The baselines the ingest figures are ratios against: gunicorn apps that do the least a webhook needs.

``bare``: read the body, parse the JSON, answer 200. ``bare_sqlite``: the same plus one
insert into SQLite (WAL, ``synchronous=FULL``) on a connection kept per thread, committed
before answering: the floor for an acknowledgement that is durably on disk.
Run by ``bench.ingest`` with the bridge's own gunicorn worker class and counts.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading

_local = threading.local()


def bare(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    json.loads(environ["wsgi.input"].read(length) or b"{}")
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]


def _connection() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(os.environ["BENCH_SQLITE_PATH"], timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        _local.conn = conn
    return conn


def bare_sqlite(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) or b"{}"
    json.loads(raw)
    _connection().execute("INSERT INTO events (body) VALUES (?)", [raw.decode()])
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]
