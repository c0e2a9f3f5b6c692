"""Each node is described once (:class:`NodeDef`) and turned into the class ComfyUI wants.

* :func:`v3_node`: an ``io.ComfyNode`` for ComfyUI's current node API
  (``comfy_api.latest``: ``define_schema()`` returning an ``io.Schema``, and a
  classmethod ``execute()`` returning ``io.NodeOutput``);
* :func:`v1_node`: a classic node (``INPUT_TYPES``, ``RETURN_TYPES``,
  ``FUNCTION``) for older ComfyUI, registered through ``NODE_CLASS_MAPPINGS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CATEGORY = "training/personalized"


@dataclass(frozen=True)
class Field:
    """One input: a widget (with its limits) or a socket to connect another node to."""

    name: str
    #: COMBO, INT, FLOAT, BOOLEAN or STRING make a widget; any other type (MODEL, LATENT, a custom type...) a socket.
    type: str
    tooltip: str
    default: Any = None
    options: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    step: float | None = None
    multiline: bool = False
    #: an INT widget followed by ComfyUI's "control after generate" choice (fixed, increment, randomize)
    control_after_generate: bool = False


@dataclass(frozen=True)
class Output:
    type: str
    name: str
    tooltip: str


@dataclass(frozen=True)
class NodeDef:
    """A node: what it shows (``inputs()`` is called whenever ComfyUI asks, so dropdowns stay current) and ``run``.

    ``run`` takes the inputs as keywords and returns the outputs as a tuple.
    """

    node_id: str
    display_name: str
    description: str
    inputs: Callable[[], list[Field]]
    outputs: tuple[Output, ...]
    run: Callable[..., tuple]
    is_input_list: bool = False
    experimental: bool = False


# -- ComfyUI's current node API (comfy_api.latest) ---------------------------------------


def v3_node(node: NodeDef, io: Any) -> type:
    """An ``io.ComfyNode`` subclass for ``node``."""

    def define_schema(cls: type) -> Any:
        return io.Schema(
            node_id=node.node_id,
            display_name=node.display_name,
            category=CATEGORY,
            description=node.description,
            is_input_list=node.is_input_list,
            is_experimental=node.experimental,
            inputs=[_v3_input(io, field) for field in node.inputs()],
            outputs=[_v3_type(io, out.type).Output(display_name=out.name, tooltip=out.tooltip) for out in node.outputs],
        )

    def execute(cls: type, **inputs: Any) -> Any:
        return io.NodeOutput(*node.run(**inputs))

    members = {
        "define_schema": classmethod(define_schema),
        "execute": classmethod(execute),
        "__doc__": node.description,
    }
    return type(node.node_id, (io.ComfyNode,), members)


def _v3_type(io: Any, name: str) -> Any:
    """ComfyUI's own type class for ``name`` (``io.Model``...), or a custom type (``io.Custom("ARGS")``)."""
    builtin = {"INT": "Int", "STRING": "String", "MODEL": "Model", "LATENT": "Latent", "CONDITIONING": "Conditioning"}
    return getattr(io, builtin[name]) if name in builtin else io.Custom(name)


def _v3_input(io: Any, field: Field) -> Any:
    common = {"tooltip": field.tooltip}
    if field.type == "COMBO":
        return io.Combo.Input(field.name, options=list(field.options), default=field.default, **common)
    if field.type in ("INT", "FLOAT"):
        kind = io.Int if field.type == "INT" else io.Float
        limits = {"min": field.min, "max": field.max, "step": field.step}
        if field.control_after_generate:
            limits["control_after_generate"] = True
        return kind.Input(field.name, default=field.default, **limits, **common)
    if field.type == "BOOLEAN":
        return io.Boolean.Input(field.name, default=field.default, **common)
    if field.type == "STRING":
        return io.String.Input(field.name, default=field.default, multiline=field.multiline, **common)
    return _v3_type(io, field.type).Input(field.name, **common)


# -- older ComfyUI (NODE_CLASS_MAPPINGS) -------------------------------------------------------


def v1_node(node: NodeDef) -> type:
    """A classic ComfyUI node class for ``node``."""

    def input_types(cls: type) -> dict[str, dict[str, tuple]]:
        return {"required": {field.name: _v1_input(field) for field in node.inputs()}}

    def run(self: object, **inputs: Any) -> tuple:
        return node.run(**inputs)

    members = {
        "INPUT_TYPES": classmethod(input_types),
        "RETURN_TYPES": tuple(out.type for out in node.outputs),
        "RETURN_NAMES": tuple(out.name for out in node.outputs),
        "OUTPUT_TOOLTIPS": tuple(out.tooltip for out in node.outputs),
        "FUNCTION": "run",
        "run": run,
        "CATEGORY": CATEGORY,
        "DESCRIPTION": node.description,
        "INPUT_IS_LIST": node.is_input_list,
        "EXPERIMENTAL": node.experimental,
        "__doc__": node.description,
    }
    return type(node.node_id, (), members)


def _v1_input(field: Field) -> tuple:
    options = {"tooltip": field.tooltip, "default": field.default}
    if field.type in ("INT", "FLOAT"):
        options.update(min=field.min, max=field.max, step=field.step)
    if field.control_after_generate:
        options["control_after_generate"] = True
    if field.type == "STRING":
        options["multiline"] = field.multiline
    options = {key: value for key, value in options.items() if value is not None}
    return (list(field.options), options) if field.type == "COMBO" else (field.type, options)
