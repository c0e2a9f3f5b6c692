"""Start-up hook for RVC's training script, imported by ``personalized-rvc.pth``.

``personalized install rvc`` writes that ``.pth`` file into RVC's Python
environment, so this module is imported by *every* interpreter started there.
It imports nothing heavy (no torch, not ``personalized``) and does nothing
unless RVC's training script is running *and* an optimizer was chosen:

* main process: ``sys.argv[0]`` is ``.../train/train.py`` (the current layout
  ``train/train.py`` and the older ``infer/modules/train/train.py``). The
  choice is read from ``logs/<experiment>/config.json`` (``train.optimizer``,
  ``train.optimizer_args``; ``<experiment>`` is RVC's ``-e`` argument, relative
  to the working directory as in RVC) or, when that names none, from the
  environment variables ``PERSONALIZED_RVC_OPTIMIZER`` and
  ``PERSONALIZED_RVC_OPTIMIZER_ARGS``. The NaN guard is read the same way:
  the ``nan_guard*`` keys of the ``train`` section, over the environment
  variable ``PERSONALIZED_RVC_NAN_GUARD``. The choice is exported as
  ``PERSONALIZED_RVC_CHOICE`` for the workers.
* spawned worker (RVC trains in ``torch.multiprocessing`` spawn children):
  ``--multiprocessing-fork`` is in ``sys.argv`` (at start-up a spawned child's
  argv is the spawn stub, not the script) and ``PERSONALIZED_RVC_CHOICE`` is
  set. Forked workers inherit the patched class from their parent.

Once ``torch.optim`` has been imported, ``torch.optim.AdamW`` is replaced by a
subclass that builds the chosen optimizer for calls made from the training
script and torch's own AdamW for every other caller. Building it is the job of
``personalized.integrations.rvc.build``, imported only at that moment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from types import FrameType, ModuleType
from typing import Any

from . import when_imported

#: The user's choice for every experiment that does not name one in its config.json.
OPTIMIZER_VAR = "PERSONALIZED_RVC_OPTIMIZER"
#: Keyword arguments for that choice, as a JSON object.
ARGS_VAR = "PERSONALIZED_RVC_OPTIMIZER_ARGS"
#: The NaN guard (``stop``, ``fallbacks`` or ``off``) for every experiment whose config.json sets none.
NAN_GUARD_VAR = "PERSONALIZED_RVC_NAN_GUARD"
#: The keys of the ``train`` section that set the NaN guard start with this.
NAN_GUARD_PREFIX = "nan_guard"
#: Set by the training script's main process for its workers (JSON); not for users.
CHOICE_VAR = "PERSONALIZED_RVC_CHOICE"

#: The last two parts of RVC's training script path, in both layouts.
TRAIN_SCRIPT = ("train", "train.py")
#: The argument a spawned multiprocessing child is started with.
SPAWN_FLAG = "--multiprocessing-fork"

Choice = dict[str, Any]


def is_train_script(path: str) -> bool:
    """Whether ``path`` is RVC's training script (``.../train/train.py``, any separator)."""
    normal = path.replace("\\", "/")
    if os.name == "nt":
        normal = normal.lower()
    return tuple(normal.split("/")[-2:]) == TRAIN_SCRIPT


def experiment_name(args: Sequence[str]) -> str | None:
    """The value of RVC's ``-e``/``--experiment_dir`` in ``args``, spelled any way argparse accepts."""
    name = None
    tokens = iter(args)
    for token in tokens:
        option, equals, value = token.partition("=")
        if token == "-e" or (_is_experiment_option(option) and not equals):
            name = next(tokens, None)
        elif _is_experiment_option(option):
            name = value
        elif token.startswith("-e") and not token.startswith("--"):
            name = token[2:].removeprefix("=")
    return name


def _is_experiment_option(option: str) -> bool:
    """``--experiment_dir`` or an abbreviation argparse resolves to it (RVC has no other ``--e...``)."""
    return len(option) > 2 and "--experiment_dir".startswith(option)


def config_path(experiment: str) -> str:
    """Where RVC's ``get_hparams`` reads the experiment's config: ``./logs/<experiment>/config.json``."""
    return os.path.join("logs", experiment, "config.json")


def read_train_section(path: str) -> Mapping[str, Any] | None:
    """The ``train`` section of a config.json (RVC writes UTF-8; GBK is its fallback), or None."""
    import json

    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError:
        return None
    for encoding in ("utf-8-sig", "gbk"):
        try:
            data = json.loads(raw.decode(encoding))
        except (UnicodeDecodeError, ValueError):
            continue
        train = data.get("train") if isinstance(data, dict) else None
        return train if isinstance(train, dict) else None
    return None


def find_choice(argv: Sequence[str], environ: Mapping[str, str]) -> Choice | None:
    """The optimizer and NaN guard chosen for this run: the experiment's config.json first, then the environment.

    Returns ``{"optimizer": ..., "optimizer_args": ..., "source": ...}`` with the
    values as written (checked later, when the optimizer is built), plus
    ``"nan_guard"`` (the ``nan_guard*`` settings) and ``"nan_guard_source"``
    when the guard is set, or None when nothing is chosen. A guard without an
    optimizer guards RVC's own AdamW.
    """
    experiment = experiment_name(argv[1:])
    path = config_path(experiment) if experiment else ""
    train = (read_train_section(path) if path else None) or {}
    choice: Choice = {}
    name = environ.get(OPTIMIZER_VAR, "").strip()
    if train.get("optimizer") not in (None, ""):
        choice = {
            "optimizer": train["optimizer"],
            "optimizer_args": train.get("optimizer_args"),
            "source": f"train.optimizer in {path}",
        }
    elif name:
        choice = {"optimizer": name, "optimizer_args": environ.get(ARGS_VAR, ""), "source": OPTIMIZER_VAR}
    guard = {key: value for key, value in train.items() if key.startswith(NAN_GUARD_PREFIX)}
    mode = environ.get(NAN_GUARD_VAR, "").strip()
    if guard:
        choice.update(
            nan_guard={"nan_guard": mode, **guard} if mode else guard, nan_guard_source=f"train.nan_guard in {path}"
        )
    elif mode:
        choice.update(nan_guard={"nan_guard": mode}, nan_guard_source=NAN_GUARD_VAR)
    if not choice:
        return None
    if "optimizer" not in choice:
        choice.update(optimizer="AdamW", source=choice["nan_guard_source"])
    return choice


def main_process_choice() -> Choice | None:
    """In RVC's main training process: the choice, exported for the workers (a stale one is removed)."""
    if not sys.argv or not is_train_script(sys.argv[0]):
        return None
    import json

    choice = find_choice(sys.argv, os.environ)
    if choice is None:
        os.environ.pop(CHOICE_VAR, None)
    else:
        os.environ[CHOICE_VAR] = json.dumps(choice)
    return choice


def worker_choice() -> Choice | None:
    """In a spawned worker of RVC's training script: the choice its main process exported."""
    text = os.environ.get(CHOICE_VAR)
    if SPAWN_FLAG not in sys.argv or not text:
        return None
    import json

    try:
        choice = json.loads(text)
    except ValueError:
        return None
    return choice if isinstance(choice, dict) else None


def called_from_train_script(frame: FrameType | None) -> bool:
    return frame is not None and is_train_script(frame.f_code.co_filename)


def patch_adamw(optim: ModuleType, choice: Choice) -> None:
    """Replace ``optim.AdamW`` with the RVC-aware subclass (once)."""
    original = optim.AdamW
    if getattr(original, "personalized_rvc_original", None) is None:
        optim.AdamW = rvc_adamw(original, choice)


def rvc_adamw(original: type, choice: Choice) -> type:
    """A subclass of torch's AdamW that builds ``choice`` when RVC's training script calls it."""

    class AdamW(original):
        __doc__ = original.__doc__
        personalized_rvc_original = original

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            if cls is AdamW and called_from_train_script(sys._getframe(1)):
                from personalized.integrations.rvc import build

                return build(choice, original, *args, **kwargs)
            return super().__new__(cls)

    import inspect  # torch is loaded by now; this keeps introspection of torch.optim.AdamW unchanged

    AdamW.__signature__ = inspect.signature(original)
    return AdamW


def activate(choice: Choice) -> None:
    """Patch ``torch.optim.AdamW`` as soon as ``torch.optim`` has been imported."""
    when_imported("torch.optim", lambda optim: patch_adamw(optim, choice))


def start() -> None:
    choice = main_process_choice() or worker_choice()
    if choice is not None:
        activate(choice)


try:
    start()
except Exception as error:  # never break the interpreter's start-up
    print(f"personalized_hooks.rvc: not active ({type(error).__name__}: {error})", file=sys.stderr)
