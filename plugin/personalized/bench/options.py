"""Command-line values shared by ``personalized bench`` and ``benchmarks/speed.py``."""

from __future__ import annotations

import argparse
import ast
from typing import Any


def assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a Python literal value (``foreach=False``, ``betas=(0.9,0.99)``), for argparse's ``type``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. foreach=False")
    try:
        return key.strip(), ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(
            f"{text!r}: {value.strip()!r} is not a Python literal (True, 0.9, (0.9, 0.99), 'text')"
        ) from None


def add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    """The repeatable ``--set KEY=VALUE`` option; the pairs land in ``args.options`` as a list."""
    parser.add_argument(
        "--set", dest="options", action="append", type=assignment, default=[], metavar="KEY=VALUE", help=help
    )


def learning_rates(text: str) -> list[float]:
    """One learning rate or a comma-separated list (``1e-3`` or ``1e-4,1e-3,1e-2``), each a positive number."""
    values = []
    for item in (part.strip() for part in text.split(",")):
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a number (e.g. 1e-3)") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{item!r}: a learning rate must be a positive number")
        values.append(value)
    return values
