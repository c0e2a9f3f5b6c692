"""The ``personalized`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .registry import OPTIONAL, available, summary


def _list(args: argparse.Namespace) -> int:
    names = available()
    width = max(len(name) for name in names)
    for name in names:
        needs = f"  [extra: {OPTIONAL[name].extra}]" if name in OPTIONAL else ""
        print(f"{name:<{width}}  {summary(name)}{needs}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but bad input exits with code 2 and one line, never a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="personalized", description="Niche PyTorch optimizers for LoRA and small models.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("list", help="list every optimizer with a one-line description").set_defaults(run=_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
