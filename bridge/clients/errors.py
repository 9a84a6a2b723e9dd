"""What a failed HTTP call says about itself, shared by the clients and the commands."""

from __future__ import annotations

from collections.abc import Iterator


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error and everything behind it: requests wraps urllib3's errors, which wrap the socket's."""
    seen: set[int] = set()
    todo: list = [error]
    while todo:
        found = todo.pop()
        if not isinstance(found, BaseException) or id(found) in seen:
            continue
        seen.add(id(found))
        yield found
        todo.extend([found.__cause__, found.__context__, getattr(found, "reason", None), *found.args])


def reason(error: BaseException) -> str:
    """The innermost cause of a failed call, in one line ("[Errno 111] Connection refused")."""
    innermost = list(causes(error))[-1]
    return " ".join(str(innermost).split()) or type(innermost).__name__
