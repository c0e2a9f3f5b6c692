"""The patch: our optimizers as members of OneTrainer's ``Optimizer`` enum, with defaults and a builder.

Three independent steps, one per OneTrainer module, each safe to run twice:

* :func:`patch_enum` (``modules.util.enum.Optimizer``): one member per optimizer,
  ``PERSONALIZED_<NAME>``, so that config files, presets and the UI dropdown accept it;
* :func:`patch_defaults` (``modules.util.optimizer_util``): our defaults in
  ``OPTIMIZER_DEFAULT_PARAMETERS``, in OneTrainer's own field names (the UI shows one widget per key);
* :func:`patch_create` (``modules.util.create``): ``create_optimizer`` builds our class for our
  members and restores a saved state the way OneTrainer does; other members go to the original.

Each step checks the shape of what it patches and raises :class:`OneTrainerChanged` when
OneTrainer no longer looks as expected, rather than letting a run fall back to AdamW.
Checked against OneTrainer commit 23df383 (2026-08-19).
"""

from __future__ import annotations

import ast
import enum
import functools
import inspect
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import personalized
from personalized.exporters import onetrainer_member

from .fields import Schema, plan

#: Our optimizers whose param groups carry Prodigy's ``d``: OneTrainer then logs lr * d.
ADAPTIVE = frozenset({"Prodigy"})
#: ``create_optimizer``'s parameters, as OneTrainer's callers pass them.
CREATE_PARAMETERS = ("parameter_group_collection", "state_dict", "config", "layer_key_fn")
#: Names the state restore in ``create_optimizer`` must use for us to mirror it.
RESTORE_NAMES = ("param_group_mapping", "param_group_optimizer_mapping", "unique_name_mapping")
#: Marks what we added, so that a second patch recognises it.
MARK = "__personalized_onetrainer__"
#: OneTrainer's on/off field for its fused back pass (the "Fused Back Pass" switch).
FUSED_BACK_PASS = "fused_back_pass"

OFF_HINT = (
    "Update personalized-optimizers, or start OneTrainer without the integration: "
    "set PERSONALIZED_ONETRAINER=off, or run `personalized uninstall onetrainer --python <OneTrainer's python>`."
)


class OneTrainerChanged(RuntimeError):
    """OneTrainer's code no longer has the shape this integration patches."""

    def __init__(self, what: str) -> None:
        super().__init__(f"personalized: cannot add our optimizers to OneTrainer: {what}. {OFF_HINT}")
        self.what = what


def members() -> dict[str, str]:
    """Enum member name -> our optimizer name, for every optimizer of the package."""
    return {onetrainer_member(name): name for name in personalized.available()}


# -- the enum ----------------------------------------------------------------------------


def patch_enum(enum_module: ModuleType) -> type[enum.Enum]:
    """Add our members to ``enum_module.Optimizer`` (and Prodigy to ``is_adaptive``); return the enum."""
    optimizer_enum = getattr(enum_module, "Optimizer", None)
    _check_enum(optimizer_enum)
    ours = set(getattr(optimizer_enum, MARK, ()))
    for name in members():
        if name in optimizer_enum._member_map_:
            if name not in ours:
                raise OneTrainerChanged(f"OneTrainer's Optimizer enum has a member {name} of its own")
            continue
        _add_member(optimizer_enum, name)
        ours.add(name)
    type.__setattr__(optimizer_enum, MARK, frozenset(ours))
    _extend_is_adaptive(optimizer_enum)
    _extend_fused_back_pass(optimizer_enum)
    return optimizer_enum


def _check_enum(optimizer_enum: Any) -> None:
    if not (isinstance(optimizer_enum, type) and issubclass(optimizer_enum, enum.Enum)):
        raise OneTrainerChanged("modules.util.enum.Optimizer.Optimizer is no longer an Enum")
    adamw = optimizer_enum.__members__.get("ADAMW")
    if adamw is None or adamw.value != "ADAMW" or str(adamw) != "ADAMW":
        raise OneTrainerChanged("its Optimizer enum no longer has ADAMW = 'ADAMW' with str() giving the value")
    if optimizer_enum._member_type_ is not object:
        raise OneTrainerChanged("its Optimizer enum now mixes in a data type")
    for table in ("_member_names_", "_member_map_", "_value2member_map_"):
        if not hasattr(optimizer_enum, table):
            raise OneTrainerChanged(f"this Python's Enum has no {table}")


def _add_member(optimizer_enum: type[enum.Enum], name: str) -> None:
    """Add member ``name`` (value ``name``, as OneTrainer's members) the way Enum's own machinery does."""
    member = object.__new__(optimizer_enum)
    member._name_ = name
    member._value_ = name
    sample = optimizer_enum.ADAMW  # type: ignore[attr-defined]
    if hasattr(sample, "__objclass__"):
        member.__objclass__ = optimizer_enum  # type: ignore[attr-defined]
    if hasattr(sample, "_sort_order_"):
        member._sort_order_ = len(optimizer_enum._member_names_)  # type: ignore[attr-defined]
    type.__setattr__(optimizer_enum, name, member)
    optimizer_enum._member_names_.append(name)  # type: ignore[attr-defined]
    optimizer_enum._member_map_[name] = member
    optimizer_enum._value2member_map_[name] = member


def _extend_is_adaptive(optimizer_enum: type[enum.Enum]) -> None:
    """Make ``is_adaptive`` true for our adaptive members (OneTrainer then logs lr * d)."""
    original = inspect.getattr_static(optimizer_enum, "is_adaptive", None)
    if not isinstance(original, property) or original.fget is None or getattr(original.fget, MARK, False):
        return  # gone (only logging needs it) or already extended
    adaptive = frozenset(onetrainer_member(name) for name in ADAPTIVE)
    getter = original.fget

    def is_adaptive(self: enum.Enum) -> bool:
        return self.name in adaptive or getter(self)

    setattr(is_adaptive, MARK, True)
    type.__setattr__(optimizer_enum, "is_adaptive", property(is_adaptive, doc=original.__doc__))


def _extend_fused_back_pass(optimizer_enum: type[enum.Enum]) -> None:
    """Let OneTrainer's "Fused Back Pass" call ``step_parameter`` on our per-parameter optimizers."""
    original = inspect.getattr_static(optimizer_enum, "supports_fused_back_pass", None)
    if not callable(original) or getattr(original, MARK, False):
        return  # gone (the option then does not exist) or already extended

    def supports_fused_back_pass(self: enum.Enum) -> bool:
        name = members().get(self.name)
        return per_parameter(name) if name is not None else original(self)

    setattr(supports_fused_back_pass, MARK, True)
    type.__setattr__(optimizer_enum, "supports_fused_back_pass", supports_fused_back_pass)


@functools.cache
def per_parameter(name: str) -> bool:
    """Whether our optimizer ``name`` can update one parameter at a time (not Prodigy)."""
    try:
        return bool(getattr(personalized.get_optimizer(name), "per_parameter_update", False))
    except ImportError:
        return False


# -- the defaults table ------------------------------------------------------------------


def patch_defaults(optimizer_util_module: ModuleType) -> None:
    """Add our defaults to ``OPTIMIZER_DEFAULT_PARAMETERS`` in OneTrainer's field names."""
    table = getattr(optimizer_util_module, "OPTIMIZER_DEFAULT_PARAMETERS", None)
    optimizer_enum = getattr(optimizer_util_module, "Optimizer", None)
    config_class = getattr(optimizer_util_module, "TrainOptimizerConfig", None)
    if not isinstance(table, dict) or optimizer_enum is None or config_class is None:
        raise OneTrainerChanged("modules.util.optimizer_util no longer has OPTIMIZER_DEFAULT_PARAMETERS as before")
    if not all(isinstance(key, optimizer_enum) for key in table):
        raise OneTrainerChanged("OPTIMIZER_DEFAULT_PARAMETERS is no longer keyed by Optimizer members")
    patch_enum(_module_of(optimizer_enum))
    schema = _schema(config_class.default_values())
    for member_name, name in members().items():
        table[optimizer_enum[member_name]] = _defaults(name, schema)


def _module_of(cls: type) -> ModuleType:
    return sys.modules[cls.__module__]


def _schema(optimizer_config: Any) -> Schema:
    try:
        schema = Schema.of(optimizer_config)
    except TypeError as error:
        raise OneTrainerChanged(str(error)) from None
    if "optimizer" not in schema.fields:
        raise OneTrainerChanged("TrainOptimizerConfig no longer has an 'optimizer' field")
    return schema


def _defaults(name: str, schema: Schema) -> dict[str, Any]:
    """Our defaults for one optimizer; empty when its optional package is missing (it fails when built).

    The optimizer settings window shows a switch only for the keys of this table, so the optimizers
    that can update one parameter at a time also get OneTrainer's ``fused_back_pass`` (off, as for
    OneTrainer's own optimizers): that is the "Fused Back Pass" switch.
    """
    try:
        cls = personalized.get_optimizer(name)
    except ImportError:
        return {}
    defaults = plan(cls, schema).onetrainer_defaults()
    if per_parameter(name) and schema.fits(FUSED_BACK_PASS, False):
        defaults[FUSED_BACK_PASS] = False
    return defaults


# -- create_optimizer --------------------------------------------------------------------


def patch_create(create_module: ModuleType) -> None:
    """Wrap ``create_module.create_optimizer`` so that it builds our optimizers for our members."""
    original = getattr(create_module, "create_optimizer", None)
    if original is None or not callable(original):
        raise OneTrainerChanged("modules.util.create no longer has create_optimizer")
    if getattr(original, MARK, False):
        return
    _check_create(original)
    create_module.create_optimizer = _wrap(original)


def _check_create(create_optimizer: Callable[..., Any]) -> None:
    try:
        source = textwrap.dedent(inspect.getsource(create_optimizer))
    except (OSError, TypeError):
        raise OneTrainerChanged("the source of create_optimizer cannot be read to check it") from None
    function = ast.parse(source).body[0]
    if not isinstance(function, ast.FunctionDef):
        raise OneTrainerChanged("create_optimizer is no longer a plain function")
    check_create_source(function, source)


def check_create_source(function: ast.FunctionDef, source: str) -> None:
    """Parameters, a ``match`` on the optimizer without a default case, and the by-name state restore."""
    arguments = function.args
    parameters = tuple(a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs])
    if parameters != CREATE_PARAMETERS or arguments.vararg or arguments.kwarg:
        raise OneTrainerChanged(f"create_optimizer now takes {parameters}, not {CREATE_PARAMETERS}")
    text = ast.get_source_segment(source, function) or ""
    missing = [name for name in RESTORE_NAMES if name not in text]
    if missing:
        raise OneTrainerChanged(f"create_optimizer restores state differently (no {', '.join(missing)})")
    matches = [
        node
        for node in ast.walk(function)
        if isinstance(node, ast.Match) and ast.unparse(node.subject).endswith("optimizer.optimizer")
    ]
    if len(matches) != 1:
        raise OneTrainerChanged("create_optimizer no longer picks the optimizer with one match statement")
    ours = set(members())
    for case in matches[0].cases:
        names = _case_names(case.pattern)
        if names is None:
            raise OneTrainerChanged("create_optimizer's match now has a default case")
        if names & ours:
            raise OneTrainerChanged(f"create_optimizer now builds {', '.join(sorted(names & ours))} itself")


def _case_names(pattern: ast.pattern) -> set[str] | None:
    """Member names of ``case Optimizer.A`` / ``case Optimizer.A | Optimizer.B``; None for anything else."""
    if isinstance(pattern, ast.MatchValue) and isinstance(pattern.value, ast.Attribute):
        return {pattern.value.attr}
    if isinstance(pattern, ast.MatchOr):
        parts = [_case_names(part) for part in pattern.patterns]
        return None if any(part is None for part in parts) else set().union(*parts)  # type: ignore[arg-type]
    return None


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create_optimizer(
        parameter_group_collection: Any,
        state_dict: dict[str, Any] | None,
        config: Any,
        layer_key_fn: Any = None,
    ) -> Any:
        name = members().get(getattr(config.optimizer.optimizer, "name", None))
        if name is None:
            return original(parameter_group_collection, state_dict, config, layer_key_fn)
        # OneTrainer's own checks run before its match (no optimizer, layer offloading without
        # fused back pass, ...); for a member it has no case for, it then returns None.
        if original(parameter_group_collection, None, config, layer_key_fn) is not None:
            raise OneTrainerChanged(f"create_optimizer now builds {config.optimizer.optimizer} itself")
        parameters = parameter_group_collection.parameters_for_optimizer(config)
        optimizer = build(name, parameters, config)
        if state_dict is not None:
            restore_state(
                optimizer,
                state_dict,
                parameters,
                parameter_group_collection.unique_name_mapping,
                str(config.optimizer.optimizer),
            )
        return optimizer

    setattr(create_optimizer, MARK, True)
    return create_optimizer


def build(name: str, parameters: list[dict[str, Any]], config: Any) -> Any:
    """Our optimizer ``name`` on OneTrainer's param groups, configured from ``config`` (a TrainConfig).

    ``lr`` is OneTrainer's learning rate (each group has its own anyway). As OneTrainer does for
    its Adafactor, a relative step size drops the learning rates (``lr=None``).
    """
    cls = personalized.get_optimizer(name)
    fields = plan(cls, _schema(config.optimizer))
    kwargs = {**fields.kwargs(config.optimizer), **fields.extras(config.optimizer)}
    lr = config.learning_rate
    if kwargs.get("relative_step", fields.class_defaults.get("relative_step", False)):
        for group in parameters:
            group.pop("lr", None)
        lr = None
    optimizer = cls(parameters, lr=lr, **kwargs)
    if per_parameter(name):
        optimizer.step_parameter = OwningGroupStep(optimizer)
    return optimizer


class OwningGroupStep:
    """``step_parameter`` that updates each tensor with the param group that holds it.

    OneTrainer's fused back pass (``GenericTrainer.__apply_fused_back_pass``, commit 23df383)
    defines its per-tensor step function inside the loop over the groups, and each gradient hook
    calls it by name: every hook runs the last definition, whose default arguments are the last
    group and index. Every tensor thus arrives as ``step_parameter(tensor, last_group, last_i)``,
    and with a learning rate per model part all parts would train with the last part's (and with
    its other settings; OneTrainer's own AdamW has the same problem). This looks the tensor up
    among the optimizer's groups instead; a tensor that is in none keeps the group it came with.
    The lookup is a table by tensor, rebuilt when the groups change (``load_state_dict`` replaces
    them), so a step costs no search.
    """

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        self.owners: dict[int, tuple[dict[str, Any], int]] = {}

    def __call__(self, tensor: Any, param_group: dict[str, Any], i: int | None = None) -> None:
        group, index = self.owner(tensor) or (param_group, i)
        type(self.optimizer).step_parameter(self.optimizer, tensor, group, index)

    def owner(self, tensor: Any) -> tuple[dict[str, Any], int] | None:
        """The group holding ``tensor`` and its index there; None if no group holds it."""
        found = self.owners.get(id(tensor))
        if found is None or not self._holds(found, tensor):
            self.owners = {
                id(p): (group, index)
                for group in self.optimizer.param_groups
                for index, p in enumerate(group["params"])
            }
            found = self.owners.get(id(tensor))
        return found

    def _holds(self, owner: tuple[dict[str, Any], int], tensor: Any) -> bool:
        group, index = owner
        params = group["params"]
        current = any(group is live for live in self.optimizer.param_groups)
        return current and index < len(params) and params[index] is tensor


def restore_state(
    optimizer: Any,
    state_dict: dict[str, Any],
    parameters: list[dict[str, Any]],
    group_names: list[str],
    optimizer_string: str,
) -> None:
    """Load a state saved by OneTrainer into ``optimizer``, with OneTrainer's rules.

    A saved state carries ``param_group_mapping`` (the unique name of each group) and
    ``param_group_optimizer_mapping`` (the optimizer each group was saved with). A new group
    takes the saved group of the same name if that was saved by the same optimizer, and starts
    fresh otherwise. Restored groups keep their saved hyperparameters except ``lr`` and
    ``initial_lr``, which come from the new groups. A state without the mapping (older
    OneTrainer) is taken to have the same groups in the same order.
    """
    if "param_group_mapping" not in state_dict:
        for saved, group in zip(state_dict["param_groups"], parameters):
            saved["lr"] = group.get("lr")
            saved["initial_lr"] = group["initial_lr"]
    else:
        state_dict["state"], state_dict["param_groups"] = _regroup(optimizer, state_dict, group_names, optimizer_string)
    optimizer.load_state_dict(state_dict)


def _regroup(
    optimizer: Any, state_dict: dict[str, Any], group_names: list[str], optimizer_string: str
) -> tuple[dict[int, Any], list[dict[str, Any]]]:
    """The saved state and groups rearranged for the new groups (params numbered anew from 0)."""
    saved_state, saved_groups = state_dict["state"], state_dict["param_groups"]
    saved_names, saved_optimizers = state_dict["param_group_mapping"], state_dict["param_group_optimizer_mapping"]
    new_groups = optimizer.state_dict()["param_groups"]
    state: dict[int, Any] = {}
    groups: list[dict[str, Any]] = []
    index = 0
    for new_group, name in zip(new_groups, group_names, strict=True):
        saved_index = saved_names.index(name) if name in saved_names else None
        if saved_index is not None and saved_optimizers[saved_index] == optimizer_string:
            group = saved_groups[saved_index]
            for position, saved_param in enumerate(group["params"]):
                if saved_param in saved_state:
                    state[index] = saved_state[saved_param]
                group["params"][position] = index
                index += 1
            group["lr"], group["initial_lr"] = new_group["lr"], new_group["initial_lr"]
        else:
            group = new_group
            group["params"][:] = range(index, index + len(group["params"]))
            index += len(group["params"])
        groups.append(group)
    return state, groups


def check_checkout(folder: Path) -> None:
    """The same checks on a OneTrainer checkout's files, without importing them (for ``install``).

    Raises :class:`OneTrainerChanged`, OSError for unreadable files, SyntaxError for code this
    Python cannot parse.
    """
    source = (folder / "modules/util/create.py").read_text(encoding="utf-8")
    function = _top_level(ast.parse(source), ast.FunctionDef, "create_optimizer")
    if function is None:
        raise OneTrainerChanged("modules/util/create.py no longer defines create_optimizer")
    check_create_source(function, source)
    enum_class = _top_level(_parse(folder / "modules/util/enum/Optimizer.py"), ast.ClassDef, "Optimizer")
    if enum_class is None:
        raise OneTrainerChanged("modules/util/enum/Optimizer.py no longer defines Optimizer")
    names = {
        target.id
        for node in enum_class.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    if "ADAMW" not in names:
        raise OneTrainerChanged("its Optimizer enum no longer has ADAMW")
    clash = sorted(names & set(members()))
    if clash:
        raise OneTrainerChanged(f"OneTrainer's Optimizer enum has a member {clash[0]} of its own")
    util = _parse(folder / "modules/util/optimizer_util.py")
    assigned = {
        target.id
        for node in util.body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    if "OPTIMIZER_DEFAULT_PARAMETERS" not in assigned:
        raise OneTrainerChanged("modules/util/optimizer_util.py no longer has OPTIMIZER_DEFAULT_PARAMETERS")


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _top_level(tree: ast.Module, kind: type[ast.AST], name: str) -> Any:
    return next((node for node in tree.body if isinstance(node, kind) and getattr(node, "name", None) == name), None)


def patch(
    enum_module: ModuleType,
    optimizer_util_module: ModuleType | None = None,
    create_module: ModuleType | None = None,
) -> None:
    """All three steps at once, for the modules given (the start-up hook runs them one by one)."""
    patch_enum(enum_module)
    if optimizer_util_module is not None:
        patch_defaults(optimizer_util_module)
    if create_module is not None:
        patch_create(create_module)
