"""The ``personalized`` command line: list, show, presets, export, install, bench.

Bad input exits with code 2 and a one-line message, never a traceback; with no
command it prints the commands (and exits 2).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from . import exporters, install_source, presets
from .bench import register as register_bench
from .docstrings import argument_help, quirks
from .registry import OPTIONAL, available, get_optimizer, summary


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


def colour(text: str, code: str) -> str:
    """ANSI-styled ``text`` when stdout is a terminal and NO_COLOR is not set."""
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    return f"\033[{code}m{text}\033[0m"


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A plain-text table; the last column wraps to the terminal width."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lead = sum(widths) + 2 * len(widths)
    last = max(30, shutil.get_terminal_size((100, 20)).columns - lead)
    lines = []
    for index, row in enumerate([header, *rows]):
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        wrapped = textwrap.wrap(row[-1], last) or [""]
        first = "  ".join([*cells, wrapped[0]])
        lines.append(colour(first, "1") if index == 0 else first)
        lines += [" " * lead + more for more in wrapped[1:]]
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    rows = []
    for name in available():
        extra = f" [needs the {OPTIONAL[name].extra} extra]" if name in OPTIONAL else ""
        rows.append((colour(name, "36"), summary(name).split(": ", 1)[-1] + extra))
    print(table(rows, ("optimizer", "what it is")))
    return 0


def _load_class(name: str) -> type:
    try:
        return get_optimizer(name)
    except (ValueError, TypeError, ImportError) as error:
        raise UsageError(str(error)) from None


def _show(args: argparse.Namespace) -> int:
    cls = _load_class(args.name)
    print(colour(cls.__name__, "1;36") + "  " + summary(cls.__name__).split(": ", 1)[-1])
    helps, rules = argument_help(cls), cls.hyperparameter_rules()
    rows = [
        (key, repr(default), f"{rules[key].describe()}. {helps.get(key, '')}".strip())
        for key, default in cls.hyperparameter_defaults().items()
    ]
    print()
    print(table(rows, ("hyperparameter", "default", "allowed, and when to touch it")))
    text = quirks(cls)
    if text:
        print()
        print(text)
    names = [name for name in presets.available() if _preset_optimizer(name) == cls.__name__]
    if names:
        print()
        print("presets: " + ", ".join(names))
    return 0


def _preset_optimizer(name: str) -> str | None:
    try:
        return presets.load(name).optimizer
    except (ImportError, ValueError):
        return None


def _load_preset(name: str) -> presets.Preset:
    try:
        return presets.load(name)
    except (ImportError, ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


def _presets(args: argparse.Namespace) -> int:
    if args.name:
        preset = _load_preset(args.name)
        print(colour(preset.name, "1;36") + f"  ({preset.optimizer})  {preset.description}")
        print(f"for: trainers {', '.join(preset.trainers)}; models {', '.join(preset.models)}")
        rows = [
            (key, repr(value), preset.sources.get(key, ""))
            for key, value in {"lr": preset.lr, **preset.hyperparameters}.items()
        ]
        print()
        print(table(rows, ("setting", "value", "source")))
        print()
        print(preset.advice)
        if preset.fallbacks:
            print()
            print("if training goes NaN, try in order:")
            for index, fallback in enumerate(preset.fallbacks, start=1):
                print(f"  {index}. " + ", ".join(f"{k}={v!r}" for k, v in fallback.items()))
        return 0
    names = presets.available()
    if not names:
        raise UsageError(f"no presets found: {presets.missing_presets_hint()}")
    rows = []
    for name in names:
        try:
            preset = presets.load(name)
            rows.append((colour(name, "36"), preset.optimizer, preset.description))
        except ImportError as error:  # pyyaml is missing: nothing can be read
            raise UsageError(str(error)) from None
        except ValueError as error:
            rows.append((colour(name, "36"), "?", f"cannot be loaded: {error}"))
    print(table(rows, ("preset", "optimizer", "description")))
    if presets.shipped_folder() is None:
        print(f"note: only your own presets are listed; {presets.missing_presets_hint()}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    preset = _load_preset(args.preset)
    if args.to == "onetrainer-json":
        dropped = exporters.onetrainer_unmapped(preset)
        if dropped:
            print(
                f"note: OneTrainer has no field for {', '.join(dropped)}; they travel in "
                'muon_adam_config["personalized"], which the personalized OneTrainer integration reads',
                file=sys.stderr,
            )
    try:
        text = exporters.FORMATS[args.to](preset)
        runnable = exporters.with_lr(preset) if args.to in exporters.LR_ALWAYS_PASSED else preset
    except ValueError as error:
        raise UsageError(str(error)) from None
    if runnable.lr != preset.lr:
        print(
            f"note: this preset has no lr (relative step) and this trainer always passes one: printed with "
            f"lr {runnable.lr} and relative_step=False, the same steps as the relative step's first 10,000",
            file=sys.stderr,
        )
    if args.to == "fluxtrainer":
        print(f"note: optimizer_type personalized.{preset.optimizer}, learning_rate {runnable.lr}", file=sys.stderr)
    if args.onto is not None and (args.to != "onetrainer-json" or args.write is None):
        raise UsageError("--onto goes with --to onetrainer-json --write ONETRAINER_FOLDER (a Load Preset menu entry)")
    if args.write is None:
        print(text)
        return 0
    if args.to == "onetrainer-json":
        return _onetrainer_menu_preset(args, preset)
    if args.to != "kohya_ss-json":
        raise UsageError("--write is for --to kohya_ss-json (a kohya_ss GUI user preset) or onetrainer-json")
    if not (args.write / "kohya_gui").is_dir():
        raise UsageError(f"{args.write} does not look like a kohya_ss folder (no kohya_gui inside)")
    path = exporters.kohya_ss_preset_path(args.write, preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path}; restart the GUI and pick it under Presets")
    return 0


def _onetrainer_menu_preset(args: argparse.Namespace, preset: presets.Preset) -> int:
    if args.onto is None:
        raise UsageError(
            "--write with onetrainer-json needs --onto: the OneTrainer preset or saved config to put the optimizer "
            "into (the optimizer alone would reset the model type, training method and base model)"
        )
    try:
        lines = _integration("onetrainer").write_menu_preset(args.write, args.onto, preset)
    except (OSError, ValueError) as error:
        raise UsageError(str(error)) from None
    print("\n".join(lines))
    return 0


#: ``personalized install`` targets and the integration module serving each.
INTEGRATIONS = {
    "kohya": "kohya",
    "onetrainer": "onetrainer",
    "rvc": "rvc",
    "diffusion-pipe": "diffusion_pipe",
    "chroma": "diffusion_pipe",
}


def _integration(trainer: str) -> object:
    """The integration module; from a clone (``plugin/`` on the path) it is read from ``integrations/``."""
    package = f"{__package__}.integrations"
    root = install_source.checkout()
    if importlib.util.find_spec(package) is None:
        if root is None:
            raise UsageError(
                f"the {trainer} integration is not in this copy of the package ({Path(__file__).parent}): "
                f"{install_source.install_instruction()}, then run personalized install {trainer} again"
            )
        spec = importlib.util.spec_from_file_location(
            package, root / "integrations" / "__init__.py", submodule_search_locations=[str(root / "integrations")]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.{INTEGRATIONS[trainer]}")


def _install(args: argparse.Namespace) -> int:
    module = _integration(args.trainer)
    action = module.install if args.command == "install" else module.uninstall
    try:
        lines = action(args.path, args.python)
    except (OSError, ValueError) as error:
        raise UsageError(str(error)) from None
    print("\n".join(lines))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but bad input exits with code 2 and one line, never a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="personalized",
        description="Niche PyTorch optimizers for LoRA and small models.",
        epilog="'personalized <command> -h' shows a command's arguments.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, title="commands", metavar="command"
    )
    commands.add_parser("list", help="list every optimizer with a one-line description").set_defaults(run=_list)
    show = commands.add_parser("show", help="an optimizer's hyperparameters, defaults and quirks")
    show.add_argument("name", help="optimizer name (any case)")
    show.set_defaults(run=_show)
    listing = commands.add_parser("presets", help="list the presets (presets show NAME: one in full)")
    listing.set_defaults(run=_presets, name=None)
    actions = listing.add_subparsers(dest="action", parser_class=_Parser)
    actions.add_parser("list", help="list every preset")
    shown = actions.add_parser("show", help="one preset: values, sources, advice, fallbacks")
    shown.add_argument("name", help="preset name, e.g. rvc/FCompass")
    export = commands.add_parser("export", help="print a preset in a trainer's format")
    export.add_argument("preset", help="preset name, e.g. rvc/FCompass")
    export.add_argument("--to", required=True, choices=list(exporters.FORMATS), help="target format")
    export.add_argument(
        "--write",
        type=Path,
        metavar="FOLDER",
        help="save it where the trainer's GUI lists presets: with kohya_ss-json the kohya_ss folder (a GUI user "
        "preset); with onetrainer-json the OneTrainer folder (a Load Preset menu entry, with --onto)",
    )
    export.add_argument(
        "--onto",
        metavar="BASE",
        help="with onetrainer-json --write: the OneTrainer preset (its name in the Load Preset menu) or saved "
        "config (.json) to put the optimizer into; the rest of it is kept",
    )
    export.set_defaults(run=_export)
    for command, verb in (("install", "enable"), ("uninstall", "disable")):
        sub = commands.add_parser(command, help=f"{verb} the integration with a trainer")
        sub.add_argument("trainer", choices=list(INTEGRATIONS), help="the trainer")
        sub.add_argument("path", nargs="?", type=Path, help="the trainer's folder (where the integration needs it)")
        sub.add_argument("--python", help="the trainer's Python interpreter (default: the one running this)")
        sub.set_defaults(run=_install)
    register_bench(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"personalized: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
