"""Coupon codes as BigCommerce accepts them, and what a Refersion trigger asks for. Pure."""

from __future__ import annotations

import re

MAX_CODE_LENGTH = 50
CODE_PATTERN = re.compile(r"[A-Za-z0-9_ \-]+")
CODE_RULE = f"letters, digits, spaces, _ and - only, at most {MAX_CODE_LENGTH} characters"
TRIGGER_TYPES = ("COUPON", "SKU", "EMAIL")


def code_problem(code: str) -> str | None:
    """Why BigCommerce would refuse ``code`` (already trimmed), or None when it is a valid code."""
    if not code:
        return "the code is empty"
    if len(code) > MAX_CODE_LENGTH:
        return f"the code is {len(code)} characters long ({CODE_RULE})"
    if not CODE_PATTERN.fullmatch(code):
        return f"the code {code!r} has characters BigCommerce refuses ({CODE_RULE})"
    return None


def is_trigger_topic(topic: str) -> bool:
    """Refersion's "New Conversion Trigger" topic, however its header spells it (NEW_CONVERSION_TRIGGER)."""
    return "TRIGGER" in re.sub(r"[\s\-]+", "_", topic.upper())


def ignored_because(trigger_type: str, *, push_on: bool) -> str | None:
    """Why a conversion trigger creates no code in BigCommerce, or None when it does."""
    if trigger_type != "COUPON":
        return f"{trigger_type} triggers are not pushed (only COUPON triggers are codes)"
    if not push_on:
        return "coupon push is off (no [coupons] section in the configuration)"
    return None
