"""The machinery every optimizer of the package shares.

A concrete optimizer declares, once each:

* its hyperparameters: the constructor's keywords and defaults, passed on with
  :func:`hyperparameters` (``**unexpected`` receives the :data:`SHARED_KEYWORDS`);
* their rules: ``own_rules`` for every keyword without a shared rule
  (:data:`personalized.validation.SHARED_RULES`); a keyword without a rule is a
  TypeError when the class is defined;
* its state: ``state_tensors`` (what the base starts before a parameter's first
  update, and for which settings) and ``extra_state_keys`` (what its update,
  clock or write-back keeps besides); :attr:`PersonalizedOptimizer.state_keys`,
  which tells its own checkpoints from other optimizers', is derived from these;
* its math, for a batch of same-shape parameters (:meth:`PersonalizedOptimizer._update`),
  with the step's host numbers (:meth:`PersonalizedOptimizer._scalars`).

Adding an optimizer takes that class in its own module of ``optimizers/`` (with an
Args section and "Differences from the original" in its docstring, which ``personalized
show`` prints; a member of a family derives from the family's class, as in
``optimizers/farms.py``), its place in ``optimizers.CATALOGUE`` (or ``registry.OPTIONAL`` when it
needs an optional package), a ``presets/default/<Name>.yaml`` and, for the tests, its
record in ``tests/records.py``; the trainers' integrations list it from there.

This base class does the rest the same way for all of them:

* validation of the constructor keywords and of every param group;
* ``step(closure)``: the closure runs with grad enabled and its loss is returned;
* a step in phases, as torch's ``_init_group`` and functional update: check every
  parameter first (:mod:`personalized.checks`; a refused step leaves everything as
  it was), then per batch prepare, initialise, scalars, run and write back
  (:meth:`PersonalizedOptimizer._step_items`);
* step counting, per parameter or per group;
* low precision: for float16/bfloat16 parameters the math runs on float32
  copies and the results are written back with stochastic rounding, so small
  updates are not lost; state keeps the parameter's dtype;
* the caller's ``p.grad`` is never modified; empty parameters are skipped;
* constructed with CPU parameters, freed temporaries are kept for reuse
  (:mod:`personalized.cpu_memory`, process-wide, once);
* one parameter at a time (:meth:`step_parameter`, for gradient release and
  OneTrainer's fused back pass) and on trial (:meth:`update_is_finite`, for
  :class:`personalized.NaNGuard`);
* checkpoints name the optimizer that wrote them; another optimizer's state is
  reset with a warning, saved state dtypes are kept.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from numbers import Real
from typing import Any, ClassVar

import torch
from torch import Tensor

from .blocks import copy_stochastic_
from .checks import check_parameter, refuse_complex
from .closure import closure_loss
from .compiling import CompiledUpdate
from .cpu_memory import keep_freed_memory
from .docstrings import add_keywords
from .guarding import GUARD_KEYS, guarded_class
from .items import Scratch, StackedState, as_batch, batches, unbatch
from .validation import Rule, reject_unknown, rules_for, validate

LOW_PRECISION = (torch.float16, torch.bfloat16)

#: The key of ``state_dict()`` that names the optimizer class that wrote it.
WRITTEN_BY = "optimizer"

#: The keywords every item-batched optimizer accepts besides its own: default, and what it does.
#: Each such class shows them in its signature and docstring (:meth:`PersonalizedOptimizer.__init_subclass__`;
#: ``personalized show`` and ``help()`` print them); AdamW8bitKahan and Prodigy, without a multi-tensor
#: path, take none of them.
SHARED_KEYWORDS: dict[str, tuple[Any, str]] = {
    "foreach": (
        True,
        "update same-shape parameters together as one stacked batch: the same math, much faster on the "
        "many small tensors of a LoRA, above all on a GPU. False saves memory (the stacking buffers and "
        "part of a step's peak) and reproduces the originals' random draws for bf16/fp16 parameters bit "
        "for bit.",
    ),
    "compile": (
        False,
        "run the update through torch.compile (fused kernels): faster steps after a first step that "
        "compiles for seconds; how much faster depends on the optimizer and the device (measure with "
        "benchmarks/speed.py --set compile=True). lr schedules do not recompile; Automagic compiles on "
        "GPUs only; what fails to compile (often on Windows) runs uncompiled after one warning.",
    ),
    "bf16_state": (
        False,
        "keep float32 parameters' optimizer state in bfloat16 with stochastic rounding: half the state "
        "memory, each step's update within 2% of float32 state's (tested). For new runs (existing state "
        "keeps its dtype).",
    ),
}

#: How a state tensor starts: a function of the parameter and its gradient.
StateInit = Callable[[Tensor, Tensor], Tensor]


def zeros(p: Tensor, grad: Tensor) -> Tensor:
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def ones(p: Tensor, grad: Tensor) -> Tensor:
    return torch.ones_like(p, memory_format=torch.preserve_format)


def negative_grad(p: Tensor, grad: Tensor) -> Tensor:
    return grad.neg().to(p.dtype)


def float32_zeros(p: Tensor, grad: Tensor) -> Tensor:
    return torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)


def grad_squared(p: Tensor, grad: Tensor) -> Tensor:
    return grad.square().to(p.dtype)


@dataclass(frozen=True)
class NeededWhen:
    """A state tensor only some settings need: started with ``init`` in param groups where
    ``condition(group)`` holds (FishMonger's ``ema_diff`` only with ``diff_amp``)."""

    condition: Callable[[Mapping[str, Any]], bool]
    init: StateInit


def state_init(declared: StateInit | NeededWhen) -> StateInit:
    """How a declared state tensor starts (for a :class:`NeededWhen`: its ``init``)."""
    return declared.init if isinstance(declared, NeededWhen) else declared


@dataclass(slots=True)
class Batch:
    """One ``_update`` call, prepared: what :meth:`PersonalizedOptimizer._init_batch` gathers."""

    params: list[Tensor]
    #: Every parameter's state (``optimizer.state[p]``; scratch copies on trial).
    states: list[dict[str, Any]]
    #: The parameters and their prepared gradients as item batches.
    p: Tensor
    grad: Tensor
    #: The state tensors this group's settings need, in write-back order.
    needed: tuple[str, ...]
    #: This step's host numbers (:meth:`PersonalizedOptimizer._scalars`).
    scalars: dict[str, Any]
    #: The state as ``_update`` receives it (item batches), and as it was before (to see what it rebound).
    items: dict[str, Any]
    before: dict[str, Any]


@dataclass(slots=True)
class Work:
    """What ``_update`` ran on: the parameter batch (a float32 copy of a low-precision one) and the state
    (the batch's own, or with low-precision tensors: a copy holding float32 copies of them)."""

    p: Tensor
    state: dict[str, Any]
    #: The state entries that are float32 copies of low-precision tensors (rounded back on write-back).
    low: tuple[str, ...]


def is_number(value: Any) -> bool:
    """A real number, not a bool (what a checkpoint's ``lr`` must be to be taken over)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def hyperparameters(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters from a constructor's ``locals()``: every argument but the parameters."""
    return {key: value for key, value in arguments.items() if key not in ("self", "params", "unexpected", "__class__")}


class PersonalizedOptimizer(torch.optim.Optimizer):
    """Base class: validation, closure, step counting and low-precision write-back."""

    #: The rules of this optimizer's keywords that have no shared rule
    #: (:data:`personalized.validation.SHARED_RULES`), and of shared ones it restricts.
    own_rules: ClassVar[Mapping[str, Rule]] = {}
    #: True when the step counter lives in the param group (shared by its params).
    group_step: ClassVar[bool] = False
    #: The state tensors the base starts before a parameter's first update, with how each
    #: starts (a :data:`StateInit`, or :class:`NeededWhen` for tensors only some settings
    #: need). The order is the order of the stochastic-rounding write-back (and so of random
    #: draws) for low-precision parameters.
    state_tensors: ClassVar[Mapping[str, StateInit | NeededWhen]] = {}
    #: State keys kept besides ``state_tensors``, :attr:`scalar_state_keys` and the step
    #: counter: what ``_update``, the step clock or ``_write_param`` create themselves.
    extra_state_keys: ClassVar[frozenset[str]] = frozenset()
    #: Every per-parameter state key this optimizer may keep (derived from the declarations
    #: above, plus ``step`` without :attr:`group_step`); any other key in a checkpoint means
    #: the state belongs to another optimizer.
    state_keys: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Complete an optimizer class from its declarations.

        Its constructor takes its own keywords and passes the others on as ``**unexpected``,
        where :data:`SHARED_KEYWORDS` are picked out: they are written into its signature and
        docstring here, from that one list, and every keyword's rule is looked up (a keyword
        without one raises TypeError now). :attr:`state_keys` is derived from the state
        declarations."""
        super().__init_subclass__(**kwargs)
        own = vars(cls).get("__init__")
        if own is not None and "unexpected" in inspect.signature(own).parameters:
            add_keywords(cls, {key: SHARED_KEYWORDS[key] for key in cls.shared_defaults()})
            cls.hyperparameter_rules()
        step = frozenset() if cls.group_step else frozenset({"step"})
        cls.state_keys = frozenset(cls.state_tensors) | cls.extra_state_keys | cls.scalar_state_keys | step

    def __new__(cls, *args: Any, **kwargs: Any) -> PersonalizedOptimizer:
        """With a ``nan_guard*`` keyword (a trainer's optimizer arguments), build the NaN-guarded
        variant of the class (:func:`personalized.guarding.guarded_class`)."""
        if not GUARD_KEYS.isdisjoint(kwargs) and not getattr(cls, "nan_guarded", False):
            cls = guarded_class(cls)
        return super().__new__(cls)

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        unexpected: Mapping[str, Any],
    ) -> None:
        owner = type(self).__name__
        rules = self.hyperparameter_rules()
        speed = {key: unexpected.get(key, default) for key, default in self.shared_defaults().items()}
        unexpected = {key: value for key, value in unexpected.items() if key not in speed}
        defaults = {**defaults, **speed}
        reject_unknown(owner, unexpected, rules)
        validate(owner, "constructor", defaults, rules)
        self._check_group("constructor", defaults)
        self._start_working_memory()
        super().__init__(params, defaults)
        if any(p.device.type == "cpu" for group in self.param_groups for p in group["params"]):
            keep_freed_memory()

    def _start_working_memory(self) -> None:
        """What the optimizer keeps besides its state and groups (not saved; rebuilt after unpickling)."""
        #: The stacked state of each multi-tensor batch, by the ids of its parameters.
        self._stacked: dict[tuple[int, ...], StackedState] = {}
        self._stacked_in_use: set[tuple[int, ...]] = set()
        self._scratch = Scratch()
        self._compiled_update = CompiledUpdate(self._update, type(self).__name__, self.compile_on_cpu)
        #: Per group, the parameters stepped one by one since its step counter last advanced.
        self._stepped_this_round: dict[int, set[Tensor]] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._start_working_memory()

    @classmethod
    def hyperparameter_defaults(cls) -> dict[str, Any]:
        """The constructor keywords and their defaults, read from the signature."""
        parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]
        defaults = {p.name: p.default for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD}
        return {**defaults, **cls.shared_defaults()}

    @classmethod
    def shared_defaults(cls) -> dict[str, Any]:
        """The keywords every item-batched optimizer accepts besides its own, with their defaults
        (:data:`SHARED_KEYWORDS`)."""
        return {key: default for key, (default, _) in SHARED_KEYWORDS.items()} if cls.item_batched else {}

    @classmethod
    def hyperparameter_rules(cls) -> dict[str, Rule]:
        """The validation rule of every constructor keyword (looked up once per class)."""
        rules = vars(cls).get("_rules")
        if rules is None:
            rules = rules_for(cls.__name__, cls.hyperparameter_defaults(), cls.own_rules)
            cls._rules = rules
        return dict(rules)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            where = f"param group {len(self.param_groups) - 1}"
            validate(type(self).__name__, where, group, self.hyperparameter_rules())
            self._check_group(where, group)
            for p in group["params"]:
                refuse_complex(type(self).__name__, self.param_groups, p)
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    # -- what a concrete optimizer provides -------------------------------------------

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        """This step's numbers that depend on the step count or on ``lr``, computed on the host
        once per batch: Python floats (and bools for decisions). ``state`` is the first
        parameter's (all of a batch share their clocks). ``_update`` reads ``lr`` and
        step-dependent values only from here, never from ``group``. None by default (Automagic:
        every element keeps its own lr).
        """
        return {}

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        """Update ``p`` and the tensors in ``state`` in place (or rebind state entries).

        Every tensor is an item batch: ``(n, *shape)`` for ``n`` parameters of
        the same shape (``n = 1`` on the plain path), with per-tensor
        reductions over the item dimensions (:mod:`personalized.blocks`);
        per-tensor scalars in ``state`` have shape ``(n, 1, ..., 1)``.
        ``p``, ``grad`` and the low-precision state tensors are float32 copies
        for bf16/fp16 parameters. ``grad`` must not be modified: it may be the
        caller's ``p.grad``.
        """
        raise NotImplementedError

    # -- hooks with a default that most optimizers keep -------------------------------

    #: Write the parameter back before the state (the draw order of some originals).
    write_param_first: ClassVar[bool] = False
    #: Whether ``_update`` receives item batches ``(n, *shape)`` (see :mod:`personalized.items`);
    #: False: it receives each parameter's own tensors, one at a time.
    item_batched: ClassVar[bool] = True
    #: Whether ``compile=True`` compiles the update for CPU tensors (False: the compiled CPU code
    #: was measured slower than eager; such optimizers compile for GPUs only).
    compile_on_cpu: ClassVar[bool] = True
    #: State entries holding one number per parameter tensor (0-dim per parameter).
    scalar_state_keys: ClassVar[frozenset[str]] = frozenset()
    #: Whether each parameter can be updated on its own (from a backward hook, or on trial by
    #: :meth:`update_is_finite`); False for optimizers with a step size computed from all gradients.
    per_parameter_update: ClassVar[bool] = True
    #: Keys a non-empty state must have (state this optimizer cannot create later).
    required_state_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _check_group(cls, where: str, group: dict[str, Any]) -> None:
        """Rules that involve several hyperparameters at once (raise ValueError)."""

    def _prepare_grad(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
        """Transform the gradient in the parameter's dtype, before any upcast (out of place)."""
        return grad

    def _advance_step(self, state: dict[str, Any], group: dict[str, Any]) -> int:
        """Count one step and return the step number ``t`` (1 at the first step)."""
        if self.group_step:
            return group["step"]
        state["step"] = state.get("step", 0) + 1
        return state["step"]

    def _restart_state(self, p: Tensor, grad: Tensor, state: dict[str, Any]) -> None:
        """Start the declared state tensors in ``state`` again, as before the first update (for
        ``_update``'s periodic resets: REMASTER, SCORN, PersonaOptimizer)."""
        for name, declared in self.state_tensors.items():
            if name in state:
                state[name].copy_(state_init(declared)(p, grad))

    def _write_param(self, p: Tensor, p32: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Store the float32 result ``p32`` into the low-precision parameter ``p``."""
        self._round(group)(p, p32)

    @staticmethod
    def _round(group: dict[str, Any]) -> Callable[[Tensor, Tensor], Any]:
        """Stochastic rounding unless the group turns it off with ``stochastic_fp=False``."""
        return copy_stochastic_ if group.get("stochastic_fp", True) else Tensor.copy_

    # -- checkpoints --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, plus the name of the optimizer that wrote it (a string, so it still
        loads with ``torch.load(weights_only=True)``)."""
        return {**super().state_dict(), WRITTEN_BY: type(self).__name__}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a checkpoint; a checkpoint of another optimizer resets the state, with one warning.

        Trainers resume a run with whatever optimizer state they saved, also
        after the user switched optimizers. A checkpoint written by another
        optimizer (named in it by ``state_dict()``; for older checkpoints and
        other libraries': a state with keys this optimizer does not use, or
        without keys it needs) is not taken over: the weights are kept, this
        optimizer's state starts fresh, and the param groups keep this
        optimizer's settings, taking only ``lr`` and ``initial_lr`` from the
        checkpoint where they are numbers (LR schedulers resume from those).
        Otherwise the param groups get the checkpoint's settings (and this
        optimizer's defaults for settings it lacks), nothing else: keys torch
        adds while loading (``differentiable``) are dropped. State tensors keep
        the dtype they were saved with (torch would cast them to the parameter's).
        """
        foreign = self._foreign_checkpoint(state_dict)
        self._stacked.clear()
        settings = [dict(group) for group in self.param_groups]
        own_defaults = set(self.defaults)
        super().load_state_dict(state_dict)
        added = set(self.defaults) - own_defaults
        for key in added:
            del self.defaults[key]
        if foreign is not None:
            for group, mine in zip(self.param_groups, settings):
                schedule = {key: group[key] for key in ("lr", "initial_lr") if is_number(group.get(key))}
                group.clear()
                group.update(mine, **schedule)
            self.state.clear()
            warnings.warn(
                f"{type(self).__name__}: the checkpoint {foreign}; the weights are kept, {type(self).__name__} keeps "
                "its own settings (lr and initial_lr from the checkpoint) and starts its state fresh",
                stacklevel=2,
            )
            return
        for group in self.param_groups:
            for key in added:
                group.pop(key, None)
            for key, default in self.defaults.items():
                group.setdefault(key, default)
        self._restore_saved_dtypes(state_dict)

    def _foreign_checkpoint(self, state_dict: dict[str, Any]) -> str | None:
        """Why ``state_dict`` is another optimizer's (completing "the checkpoint ..."), or None if it is ours."""
        writer = state_dict.get(WRITTEN_BY)
        if writer is not None:
            return None if writer == type(self).__name__ else f"was written by {writer}, not {type(self).__name__}"
        signs = self._foreign_state_keys(state_dict["state"])
        return f"holds another optimizer's state ({', '.join(signs)})" if signs else None

    def _foreign_state_keys(self, saved_state: dict[Any, dict[str, Any]]) -> list[str]:
        """What marks ``saved_state`` as another optimizer's: unknown keys, required ones missing,
        or a tensor step counter (torch's optimizers keep one; ours count in plain integers)."""
        unknown, missing, tensor_step = set(), set(), False
        for state in saved_state.values():
            unknown |= set(state) - self.state_keys
            if state:
                missing |= self.required_state_keys - set(state)
            tensor_step |= torch.is_tensor(state.get("step"))
        signs = sorted(unknown) + [f"no {key}" for key in sorted(missing)]
        return [*signs, "a tensor step counter"] if tensor_step else signs

    def _restore_saved_dtypes(self, state_dict: dict[str, Any]) -> None:
        saved_ids = chain.from_iterable(group["params"] for group in state_dict["param_groups"])
        params = chain.from_iterable(group["params"] for group in self.param_groups)
        for saved_id, p in zip(saved_ids, params):
            for key, value in state_dict["state"].get(saved_id, {}).items():
                if torch.is_tensor(value) and key != "step":
                    self.state[p][key] = value.to(device=p.device)

    # -- the shared step: check everything, then per batch prepare, initialise, scalars, run, write back --

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimisation step; return the closure's loss, if a closure is given."""
        loss = closure_loss(closure)
        plan = [
            (group, batches(self._stepped_params(group), self.state, self.item_batched and group.get("foreach", False)))
            for group in self.param_groups
        ]
        # The members of a batch share shape, dtypes, gradient layout and device (batch_key): the first stands for all.
        self._check_step(batch[0] for _, group_batches in plan for batch in group_batches)
        for group, group_batches in plan:
            if self.group_step:
                group["step"] = group.get("step", 0) + 1
            for batch in group_batches:
                self._step_items(batch, group)
        # Forget the stacks of batches that no longer exist (their views stay valid).
        self._stacked = {key: self._stacked[key] for key in self._stacked_in_use}
        self._stacked_in_use = set()
        return loss

    @torch.no_grad()
    def step_parameter(self, p: Tensor, group: dict[str, Any], i: int | None = None) -> None:
        """Update the single parameter ``p`` of ``group`` now.

        For fused backward passes: OneTrainer calls ``step_parameter(tensor,
        param_group, i)`` from a gradient hook, and
        :class:`personalized.GradientRelease` does the same. Group-level step
        counters (FMARSCrop_ExMachina) advance once per round: when a parameter
        that was already stepped comes again. ``i`` (the parameter's index in
        the group) is accepted for OneTrainer and not needed.
        """
        stepping = p.grad is not None and p.numel() > 0
        if stepping:
            self._check_step([p])
        if self.group_step:
            stepped = self._stepped_this_round.setdefault(id(group), set())
            if not stepped or p in stepped:
                group["step"] = group.get("step", 0) + 1
                stepped.clear()
            stepped.add(p)
        if stepping:
            self._step_items([p], group)

    @torch.no_grad()
    def update_is_finite(self, only: Iterable[Tensor] | None = None) -> Tensor:
        """Whether the next ``step()`` would leave every parameter and state tensor finite.

        Runs the update on scratch copies (nothing is changed and no random
        number is drawn) and returns a 0-dim bool tensor, so the caller pays
        a single host sync for the whole model. ``only``: just these
        parameters (the next ``step_parameter``). Used by
        :class:`personalized.NaNGuard`.
        """
        chosen = None if only is None else set(map(id, only))
        checks = []
        for group in self.param_groups:
            trial_group = dict(group, step=group.get("step", 0) + 1) if self.group_step else group
            params = [p for p in self._stepped_params(group) if chosen is None or id(p) in chosen]
            self._check_step(params)
            checks += [self._trial(p, trial_group) for p in params]
        return torch.stack(checks).all() if checks else torch.tensor(True)

    def _check_step(self, params: Iterable[Tensor]) -> None:
        """The check phase of a step: raise, before anything changes, if one of ``params``
        (parameters with a gradient) cannot be updated (see :func:`personalized.checks.check_parameter`).

        Called with every parameter a step will update, or with the first member of each
        multi-tensor batch (its members share shape, dtypes, layout and device). Optimizer
        state on another device is found on those first members: it sits there when a model
        was moved after its optimizer stepped, which moves every parameter.
        """
        owner = type(self).__name__
        for p in params:
            check_parameter(owner, self.param_groups, p, self.state.get(p, {}))

    @staticmethod
    def _stepped_params(group: dict[str, Any]) -> list[Tensor]:
        """Parameters with a gradient; empty tensors have nothing to update."""
        return [p for p in group["params"] if p.grad is not None and p.numel() > 0]

    def _step_items(self, params: list[Tensor], group: dict[str, Any]) -> None:
        """Update ``params`` with one ``_update`` call: the phases of a step after the check.

        ``params`` share shape, dtypes, device and clocks (a multi-tensor batch, or one
        parameter) and have passed the check phase (:meth:`_check_step`): nothing from here
        on refuses, so nothing is half-applied. Prepare, initialise and scalars
        (:meth:`_init_batch`), run (eager, or compiled with ``compile=True``), write back.
        """
        batch = self._init_batch(params, [self.state[p] for p in params], group)
        update = self._compiled_update if group.get("compile", False) else self._update
        self._write_back(batch, self._run(batch, group, update), group)

    def _trial(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        """The trial path of :meth:`update_is_finite`: the same phases for ``p`` on scratch copies of it and
        its state, eager and without write-back (so without random draws). Returns a 0-dim bool tensor:
        whether the parameter and every floating-point state tensor stayed finite."""
        scratch = {name: value.clone() if torch.is_tensor(value) else value for name, value in self.state[p].items()}
        work = self._run(self._init_batch([p], [scratch], group), group, self._update, copy=True)
        results = [
            work.p,
            *(value for value in work.state.values() if torch.is_tensor(value) and value.is_floating_point()),
        ]
        return torch.stack([torch.isfinite(result).all() for result in results]).all()

    def _init_batch(self, params: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> Batch:
        """Gather one ``_update`` call, as torch's ``_init_group`` does: the prepare, initialise and scalars
        phases, then the state as item batches."""
        p_items, grad = self._prepare(params, group)
        needed = self._initialise(params, states, grad, group)
        scalars = self._step_scalars(states, group)
        items = self._state_items(params, states)
        return Batch(params, states, p_items, grad, needed, scalars, items, dict(items))

    def _prepare(self, params: list[Tensor], group: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """The prepare phase: the parameters and their gradients as item batches (stacked into reused
        buffers), the gradient transformed by :meth:`_prepare_grad`."""
        p_items = self._batch(params, "param")
        return p_items, self._prepare_grad(p_items, self._batch([p.grad for p in params], "grad"), group)

    def _initialise(
        self, params: list[Tensor], states: list[dict[str, Any]], grad: Tensor, group: dict[str, Any]
    ) -> tuple[str, ...]:
        """The initialise phase: start the declared state tensors (:attr:`state_tensors`) that this group's
        settings need and a parameter lacks (at its first step, or after a setting was switched on).
        Returns the needed names, in write-back order."""
        inits = {
            name: state_init(declared)
            for name, declared in self.state_tensors.items()
            if not isinstance(declared, NeededWhen) or declared.condition(group)
        }
        if any(name not in state for state in states for name in inits):
            for p, state, item_grad in zip(params, states, grad.unbind(0) if self.item_batched else [grad]):
                for name, init in inits.items():
                    if name not in state:
                        state[name] = self._stored(init(p, item_grad), group)
        return tuple(inits)

    def _step_scalars(self, states: list[dict[str, Any]], group: dict[str, Any]) -> dict[str, Any]:
        """The scalars phase: advance every parameter's step clock, then this step's host numbers
        (:meth:`_scalars`, from the first parameter's clock: a batch shares its clocks)."""
        steps = [self._advance_step(state, group) for state in states]
        return self._scalars(group, steps[0], states[0])

    def _run(self, batch: Batch, group: dict[str, Any], update: Callable[..., None], copy: bool = False) -> Work:
        """The run phase: ``update`` (``_update`` or its compiled form) on the batch. Low-precision
        (bf16/fp16) parameter batches and state tensors are replaced by float32 copies; ``copy`` (a
        trial) copies the parameter batch in any case."""
        low = tuple(name for name in batch.needed if batch.items[name].dtype in LOW_PRECISION)
        state = batch.items
        if low:
            state = {**state, **{name: state[name].float() for name in low}}
        p = batch.p.float() if batch.p.dtype in LOW_PRECISION else batch.p.clone() if copy else batch.p
        update(p, batch.grad.to(p.dtype), state, group, batch.scalars)
        return Work(p, state, low)

    def _write_back(self, batch: Batch, work: Work, group: dict[str, Any]) -> None:
        """The write-back phase: float32 results rounded into low-precision tensors (stochastically
        unless ``stochastic_fp=False``), the parameter before the state with :attr:`write_param_first`,
        else after it, the state in declaration order (which fixes the random draws); what ``_update``
        rebound or created stored in every parameter's state; stacked parameters copied back."""
        items, low_param = batch.items, batch.p.dtype in LOW_PRECISION
        if low_param and self.write_param_first:
            self._write_param(batch.p, work.p, items, group)
        if work.low:  # ``_update`` ran on a copy of the state
            round_ = self._round(group)
            for name, value in work.state.items():
                if name in work.low:
                    round_(items[name], value)
                else:
                    items[name] = value
        if low_param and not self.write_param_first:
            self._write_param(batch.p, work.p, items, group)
        self._store_items(batch.params, batch.states, items, batch.before)
        if len(batch.params) > 1:  # batch.p was stacked: copy the results back
            torch._foreach_copy_(batch.params, list(batch.p.unbind(0)))

    @staticmethod
    def _stored(value: Tensor, group: dict[str, Any]) -> Tensor:
        """A new state tensor in the dtype it is kept in (bfloat16 instead of float32 with ``bf16_state``)."""
        if group.get("bf16_state", False) and value.dtype == torch.float32:
            return value.to(torch.bfloat16)
        return value

    def _batch(self, tensors: list[Tensor], purpose: str) -> Tensor:
        """The item batch of same-shape tensors (a view of a single one; stacked into a reused buffer)."""
        if not self.item_batched:
            return tensors[0]
        out = self._scratch.get(purpose, tensors[0], len(tensors)) if len(tensors) > 1 else None
        return as_batch(tensors, False, tensors[0].dim(), out)

    def _state_items(self, params: list[Tensor], states: list[dict[str, Any]]) -> dict[str, Any]:
        """The state of a batch as item batches (stacked tensors are kept between steps)."""
        if not self.item_batched:
            return dict(states[0])
        ndim = params[0].dim()
        if len(params) == 1:
            return {
                name: as_batch([value], name in self.scalar_state_keys, ndim) if torch.is_tensor(value) else value
                for name, value in states[0].items()
            }
        key = tuple(map(id, params))
        stacked = self._stacked.get(key)
        if stacked is None or not stacked.matches(states):
            stacked = self._stacked[key] = StackedState()
            stacked.build(states, self.scalar_state_keys, ndim)
        self._stacked_in_use.add(key)
        return {**states[0], **stacked.stacks}

    def _store_items(
        self,
        params: list[Tensor],
        states: list[dict[str, Any]],
        items: dict[str, Any],
        before: dict[str, Any],
    ) -> None:
        """Write back what ``_update`` rebound or created, and the clocks, to every parameter's state."""
        if not self.item_batched:
            states[0].update(items)
            return
        stacked = self._stacked.get(tuple(map(id, params))) if len(params) > 1 else None
        for name, value in items.items():
            if not torch.is_tensor(value):
                for state in states:
                    state[name] = value
            elif value is not before.get(name):
                scalar = name in self.scalar_state_keys
                if stacked is not None:
                    stacked.store(states, name, value, scalar)
                else:
                    states[0][name] = unbatch(value, scalar)[0]
