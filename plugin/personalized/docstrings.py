"""An optimizer's docstring: the shared keywords written into it and its signature, and its
Args and "Differences from ..." sections read back (for ``personalized show``)."""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

#: Where the Args section of a cleaned docstring ends: the first line that is not indented.
ARGS_SECTION = re.compile(r"^Args:\n(.*?)(?:\n\S|\Z)", flags=re.S | re.M)


def add_keywords(cls: type, keywords: Mapping[str, tuple[Any, str]]) -> None:
    """Show ``keywords`` (``{name: (default, help)}``), which ``cls.__init__`` takes through
    ``**unexpected``, as keyword-only parameters of its signature and as entries of its
    docstring's Args section: for ``inspect.signature``, ``help()``, IDEs that read either,
    and trainers that look a keyword up in the signature (diffusion-pipe's ``foreach``).

    The signature leaves ``**unexpected`` out: unknown keywords raise TypeError.
    """
    init: Callable[..., Any] = cls.__init__  # type: ignore[misc]
    own = inspect.signature(init)
    parameters = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    parameters += [
        inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=type(default).__name__)
        for key, (default, _) in keywords.items()
    ]
    init.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
    cls.__signature__ = own.replace(  # type: ignore[attr-defined]
        parameters=parameters[1:], return_annotation=inspect.Signature.empty
    )
    if keywords:
        entries = {key: text for key, (_, text) in keywords.items()}
        cls.__doc__ = _with_args(inspect.cleandoc(cls.__doc__ or ""), entries)


def _with_args(doc: str, entries: Mapping[str, str]) -> str:
    """``doc`` with ``entries`` appended to its Args section (which is created when missing)."""
    lines = [
        textwrap.fill(f"{key}: {text}", 88, initial_indent="    ", subsequent_indent="        ")
        for key, text in entries.items()
    ]
    match = ARGS_SECTION.search(doc)
    if not match:
        return f"{doc}\n\nArgs:\n" + "\n".join(lines)
    end = match.start(1) + len(match.group(1).rstrip("\n"))
    return doc[:end] + "\n" + "\n".join(lines) + doc[end:]


def argument_help(cls: type) -> dict[str, str]:
    """``{keyword: description}`` from the docstring's ``Args:`` section."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    match = ARGS_SECTION.search(doc)
    if not match:
        return {}
    entries: dict[str, str] = {}
    current = None
    for line in match.group(1).splitlines():
        entry = re.match(r"^    (\w+): (.*)$", line)
        if entry:
            current = entry.group(1)
            entries[current] = entry.group(2).strip()
        elif current and line.strip():
            entries[current] += " " + line.strip()
    return entries


def quirks(cls: type) -> str:
    """The docstring's "Differences from ..." section, as written."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    match = re.search(r"^Differences from .*$", doc, flags=re.M)
    return doc[match.start() :].strip() if match else ""
