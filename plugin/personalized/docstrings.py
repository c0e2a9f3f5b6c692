"""Read the Args and "Differences from ..." sections of an optimizer's docstring (for ``personalized show``)."""

from __future__ import annotations

import inspect
import re


def argument_help(cls: type) -> dict[str, str]:
    """``{keyword: description}`` from the docstring's ``Args:`` section, then the keywords
    every optimizer of the package shares."""
    from .base import SHARED_KEYWORDS

    accepted = getattr(cls, "shared_defaults", dict)()
    shared = {key: text for key, (_, text) in SHARED_KEYWORDS.items() if key in accepted}
    doc = inspect.cleandoc(cls.__doc__ or "")
    match = re.search(r"^Args:\n(.*?)(?:\n\S|\Z)", doc, flags=re.S | re.M)
    if not match:
        return shared
    entries: dict[str, str] = {}
    current = None
    for line in match.group(1).splitlines():
        entry = re.match(r"^    (\w+): (.*)$", line)
        if entry:
            current = entry.group(1)
            entries[current] = entry.group(2).strip()
        elif current and line.strip():
            entries[current] += " " + line.strip()
    return {**entries, **shared}


def quirks(cls: type) -> str:
    """The docstring's "Differences from ..." section, as written."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    match = re.search(r"^Differences from .*$", doc, flags=re.M)
    return doc[match.start() :].strip() if match else ""
