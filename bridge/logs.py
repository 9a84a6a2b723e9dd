"""Logging set-up: one format for every process, and no secret in any line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Replaces every configured secret in a log line, tracebacks included."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self._scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        return True


def configure_logging(secrets: Iterable[str] = (), level: int = logging.INFO) -> None:
    """Log to stderr with secrets redacted; safe to call more than once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_bridge", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._bridge = True
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    root.addHandler(handler)
    root.setLevel(level)
    # urllib3 logs full URLs at DEBUG; keep it quiet even when we are verbose.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
