"""Logging set-up: one format for every process, and no secret (nor email or IP address) in any line.

Two kinds of secret are redacted: the configuration's (given to :func:`configure_logging`)
and those the process learns while it runs, such as access tokens and Refersion secret
keys decrypted from the database (:func:`redact`).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable

from bridge.core.personal import mask_personal

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
REDACTED = "[redacted]"
MAX_LEARNT_SECRETS = 10_000  # the least recently learnt are forgotten past this


class _LearntSecrets:
    """Secrets learnt at run time, shared by every redacting filter of the process."""

    def __init__(self, limit: int):
        self._limit = limit
        self._lock = threading.Lock()
        self._secrets: dict[str, None] = {}  # insertion order: least recently learnt first
        self.snapshot: frozenset[str] = frozenset()  # replaced whole, so readers need no lock

    def add(self, secret: str) -> None:
        with self._lock:
            known = self._secrets.pop(secret, False) is None
            self._secrets[secret] = None
            if known:
                return
            while len(self._secrets) > self._limit:
                del self._secrets[next(iter(self._secrets))]
            self.snapshot = frozenset(self._secrets)


_learnt = _LearntSecrets(MAX_LEARNT_SECRETS)


MIN_LEARNT_LENGTH = 12  # a shorter "secret" from the database would blank ordinary words and numbers in every line


def redact(secret: str | None) -> None:
    """Redact ``secret`` from every log line of this process from now on (thread-safe)."""
    if secret and len(secret) >= MIN_LEARNT_LENGTH:
        _learnt.add(secret)


class RedactSecrets(logging.Filter):
    """Replaces every configured or learnt secret in a log line, tracebacks included."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self._configured = frozenset(secret for secret in secrets if secret)
        self._pattern: tuple[frozenset[str], re.Pattern | None] = (frozenset(), self._compile(frozenset()))

    def _compile(self, learnt: frozenset[str]) -> re.Pattern | None:
        # Longest first, so a secret containing another is replaced whole.
        secrets = sorted(self._configured | learnt, key=len, reverse=True)
        return re.compile("|".join(map(re.escape, secrets))) if secrets else None

    def _scrub(self, text: str) -> str:
        learnt, pattern = self._pattern
        if learnt is not _learnt.snapshot:
            learnt = _learnt.snapshot
            pattern = self._compile(learnt)
            self._pattern = (learnt, pattern)
        # Customer email and IP addresses too (an answer from Refersion may echo them).
        return mask_personal(pattern.sub(REDACTED, text) if pattern is not None else text)

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
