"""The browser tests' shared fixture; the helpers are in :mod:`tests.browser.framing`."""

from __future__ import annotations

import pytest

from tests.browser.framing import make_certificate


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1 and the parent page's name."""
    return make_certificate(tmp_path_factory.mktemp("tls"))
