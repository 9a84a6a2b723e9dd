"""Customer data in free text: email addresses and IP addresses, found and masked.

Pure. Used where text from outside (Refersion's answers, webhook scopes) is kept past the
retention period or written to a log line. Names cannot be recognised in free text; where
the names are known (a report's ``customer``), :func:`remove_values` takes them out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

REMOVED = "[removed]"

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
# Candidates only: each is checked with ipaddress, so times (12:30:45) and versions stay.
_IPV4 = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z:])")


def _an_address_of_someone(candidate: str) -> bool:
    """A valid address that can belong to a person: loopback and 0.0.0.0/:: are the host's own."""
    try:
        address = ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)


def _mask_ip(match: re.Match) -> str:
    return REMOVED if _an_address_of_someone(match.group(0)) else match.group(0)


def mask_personal(text: str) -> str:
    """``text`` with every email address and every IPv4/IPv6 address (but the host's own) masked."""
    if not text:
        return text
    text = _EMAIL.sub(REMOVED, text)
    text = _IPV4.sub(_mask_ip, text)
    return _IPV6.sub(_mask_ip, text)


def remove_values(text: str, values: Iterable[str]) -> str:
    """``text`` without any of ``values`` (whole words, case-insensitive), then :func:`mask_personal`."""
    if not text:
        return text
    known = sorted({value.strip() for value in values if isinstance(value, str) and len(value.strip()) > 1}, key=len, reverse=True)
    if known:
        pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, known)) + r")(?!\w)", re.IGNORECASE)
        text = pattern.sub(REMOVED, text)
    return mask_personal(text)
