"""The database file: WAL mode, migrations that upgrade an existing file."""

from bridge.storage.db import connect, migrations


def test_a_new_file_is_created_in_wal_mode_with_every_migration(tmp_path):
    db = connect(tmp_path / "nested" / "bridge.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [m.name for m in migrations.applied(db)] == [m.name for m in migrations._migrations]
    assert {"events", "deliveries", "orders", "cart_links", "pauses"} <= set(db.table_names())
    db.close()


def test_reopening_an_existing_file_keeps_its_data_and_applies_nothing_twice(tmp_path):
    path = tmp_path / "bridge.sqlite3"
    db = connect(path)
    db.execute("INSERT INTO pauses VALUES ('abc123', 'refersion', 'f', 'r', 1)")
    applied = migrations.applied(db)
    db.close()
    db = connect(path)
    assert migrations.applied(db) == applied
    assert db.execute("SELECT count(*) FROM pauses").fetchone()[0] == 1
    assert migrations.pending(db) == []
    db.close()


def test_every_migration_function_is_registered_in_order():
    """A migration written without its decorator is never applied (a merge once dropped one)."""
    import inspect
    import re

    from bridge.storage import db as module

    written = sorted(name for name, _ in inspect.getmembers(module, inspect.isfunction) if re.fullmatch(r"m\d{3}_\w+", name))
    assert [m.name for m in migrations._migrations] == written


def test_set_up_steps_are_tried_again_while_the_file_is_locked_and_only_then():
    import sqlite3

    import pytest

    from bridge.storage.db import _until_unlocked

    tries = []

    def locked_twice():
        tries.append(1)
        if len(tries) < 3:
            raise sqlite3.OperationalError("database is locked")

    _until_unlocked(locked_twice, busy_timeout=5)
    assert len(tries) == 3
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        _until_unlocked(lambda: (_ for _ in ()).throw(sqlite3.OperationalError("no such table: x")), busy_timeout=5)

    def always_locked():
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _until_unlocked(always_locked, busy_timeout=0.2)


def test_durable_commits_at_full_and_puts_the_connection_back_as_it_was(tmp_path):
    from bridge.storage.db import NORMAL, durable

    db = connect(tmp_path / "bridge.sqlite3", synchronous=NORMAL)
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with durable(db):
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert connect(tmp_path / "other.sqlite3").execute("PRAGMA synchronous").fetchone()[0] == 2  # the default: FULL
