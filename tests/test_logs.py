"""No secret reaches a log line: messages, arguments and tracebacks are all redacted."""

import io
import logging
import sys
import threading

import pytest

from bridge import logs
from bridge.logs import FORMAT, RedactSecrets, configure_logging
from bridge.storage.db import immediate
from bridge.storage.stores import StoreRegistry
from bridge.storage.vault import Vault
from tests.conftest import ENCRYPTION_KEY, install_store

SECRET = "sec_test_9f8e7d6c5b4a"
TOKEN = "bc-token-0123456789abcdef"


@pytest.fixture
def logged():
    """A logger writing through a redacting handler into a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets([SECRET, TOKEN, ""]))
    logger = logging.getLogger("tests.logs.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def fail_with_secret():
    raise RuntimeError(f"refused: header Refersion-Secret-Key={SECRET} token={TOKEN}")


def test_a_secret_in_the_message_and_its_arguments_is_redacted(logged):
    logger, stream = logged
    logger.info("keys %s and " + TOKEN, SECRET)
    line = stream.getvalue()
    assert SECRET not in line and TOKEN not in line
    assert line.count("[redacted]") == 2


def test_a_secret_inside_an_exception_is_redacted_from_the_traceback(logged):
    logger, stream = logged
    try:
        fail_with_secret()
    except RuntimeError:
        logger.exception("Could not deliver")
    text = stream.getvalue()
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: refused: header Refersion-Secret-Key=[redacted] token=[redacted]" in text
    assert SECRET not in text and TOKEN not in text


def test_a_traceback_already_formatted_by_another_handler_is_redacted_too(logged):
    logger, stream = logged
    first = io.StringIO()
    plain = logging.StreamHandler(first)  # an earlier handler formats (and caches) the traceback first
    logger.handlers.insert(0, plain)
    try:
        try:
            fail_with_secret()
        except RuntimeError:
            logger.exception("Could not deliver")
    finally:
        logger.removeHandler(plain)
    assert SECRET in first.getvalue()  # the cached traceback really held the secret
    text = stream.getvalue()
    assert "RuntimeError: refused" in text
    assert SECRET not in text and TOKEN not in text


@pytest.fixture
def bridge_logging():
    """``configure_logging`` as a command calls it; the root logger is put back afterwards."""
    root = logging.getLogger()
    level = root.level
    yield configure_logging
    for handler in [h for h in root.handlers if getattr(h, "_bridge", False)]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_configured_logging_redacts_tracebacks_on_stderr(bridge_logging, capsys):
    bridge_logging([SECRET])
    try:
        fail_with_secret()
    except RuntimeError:
        logging.getLogger("bridge.test").exception("Lease heartbeat failed")
    err = capsys.readouterr().err
    assert "Lease heartbeat failed" in err
    assert "Refersion-Secret-Key=[redacted]" in err
    assert SECRET not in err


# --- Secrets learnt at run time (decrypted from the database) -------------------------------


def test_a_secret_learnt_after_the_filter_was_made_is_redacted_too(logged):
    logger, stream = logged
    learnt = "app-token-learnt-later-5f0c2a9e71"
    logger.info("before: %s", learnt)
    logs.redact(learnt)
    logger.info("after: %s", learnt)
    first, second = stream.getvalue().splitlines()
    assert first.endswith(f"before: {learnt}")  # nothing told the filter yet
    assert second.endswith("after: [redacted]")


def test_a_token_the_registry_decrypts_is_redacted_from_lines_and_tracebacks(settings, db, bridge_logging, capsys):
    token = "app-token-decrypted-only-8d41c0b7e2"  # written by another process: this one never saw it
    with immediate(db):
        db.execute(
            "INSERT INTO stores (store_hash, mode, access_token, installed_at, updated_at) VALUES ('appdecrypt', 'app', ?, 1, 1)",
            [Vault([ENCRYPTION_KEY]).encrypt(token)],
        )
    bridge_logging(settings.secrets())
    store = StoreRegistry(settings).get(db, "appdecrypt")
    assert store.access_token == token
    log = logging.getLogger("bridge.test")
    log.warning("Calling BigCommerce with X-Auth-Token %s", store.access_token)
    try:
        raise RuntimeError(f"refused token {store.access_token}")
    except RuntimeError:
        log.exception("Could not read the order")
    err = capsys.readouterr().err
    assert "Calling BigCommerce with X-Auth-Token [redacted]" in err
    assert "RuntimeError: refused token [redacted]" in err
    assert token not in err


def test_secrets_the_registry_encrypts_are_redacted_in_the_process_that_saved_them(settings, db, logged):
    logger, stream = logged
    token, secret = "app-token-installed-here-71c3e9", "sec_store_own_key_3b9d7f1a60"
    install_store(settings, "appsaved", access_token=token)  # as the OAuth callback does
    with immediate(db):
        StoreRegistry(settings).save_settings(db, store_hash="appsaved", now=1.0, public_key="pub_store_own", secret_key=secret)
    logger.info("token %s pair %s", token, secret)
    assert stream.getvalue().rstrip().endswith("token [redacted] pair [redacted]")


def test_a_learnt_secret_too_short_to_be_one_is_not_redacted(logged):
    """A one-character "secret" saved by mistake must not blank ordinary numbers in every line."""
    logger, stream = logged
    logs.redact("1")
    logger.info("Reported order 1042 (HTTP 201)")
    assert stream.getvalue().endswith("Reported order 1042 (HTTP 201)\n")


def test_learnt_secrets_are_bounded_forgetting_the_least_recently_learnt():
    learnt = logs._LearntSecrets(limit=3)
    for secret in ("one-0001", "two-0002", "three-0003"):
        learnt.add(secret)
    learnt.add("one-0001")  # learnt again: now the most recent
    learnt.add("four-0004")
    assert learnt.snapshot == {"one-0001", "three-0003", "four-0004"}


def test_a_secret_is_redacted_from_the_moment_it_is_learnt_whatever_other_threads_learn():
    learnt = logs._LearntSecrets(limit=10_000)
    missed = []

    def learn(thread: int) -> None:
        for n in range(500):
            secret = f"thread-{thread}-secret-{n:04d}"
            learnt.add(secret)
            if secret not in learnt.snapshot:  # another thread's older view replaced ours
                missed.append(secret)

    threads = [threading.Thread(target=learn, args=(thread,)) for thread in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so races show
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert missed == []
    assert len(learnt.snapshot) == 8 * 500
