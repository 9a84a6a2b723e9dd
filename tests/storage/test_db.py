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
