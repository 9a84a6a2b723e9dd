"""No secret reaches a log line: messages, arguments and tracebacks are all redacted."""

import io
import logging

import pytest

from bridge.logs import FORMAT, RedactSecrets, configure_logging

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


def test_configured_logging_redacts_tracebacks_on_stderr(capsys):
    root = logging.getLogger()
    level = root.level
    configure_logging([SECRET])
    try:
        try:
            fail_with_secret()
        except RuntimeError:
            logging.getLogger("bridge.test").exception("Lease heartbeat failed")
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_bridge", False)]:
            root.removeHandler(handler)
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "Lease heartbeat failed" in err
    assert "Refersion-Secret-Key=[redacted]" in err
    assert SECRET not in err
