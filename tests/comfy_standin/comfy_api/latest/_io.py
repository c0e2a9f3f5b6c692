"""Stand-in for comfy_api/latest/_io.py (ComfyUI @ 004b1b5): the V3 node schema, reduced to what packs use.

Signatures, attribute names and checks follow the real module; the UI
serialisation (``as_dict``, V1 info) is left out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class Input:
    Parent: Any = None

    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, extra_dict=None, raw_link=None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict if extra_dict is not None else {}
        self.rawLink = raw_link

    @property
    def io_type(self) -> str:
        return self.Parent.io_type

    def validate(self) -> None:
        pass


class WidgetInput(Input):
    def __init__(
        self,
        id,
        display_name=None,
        optional=False,
        tooltip=None,
        lazy=None,
        default=None,
        socketless=None,
        widget_type=None,
        force_input=None,
        extra_dict=None,
        raw_link=None,
    ):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input


class Output:
    Parent: Any = None

    def __init__(self, id=None, display_name=None, tooltip=None, is_output_list=False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    @property
    def io_type(self) -> str:
        return self.Parent.io_type

    def validate(self) -> None:
        pass


class ComfyTypeIO:
    io_type: str = ""

    class Input(Input):
        pass

    class Output(Output):
        pass


def comfytype(io_type: str):
    """Bind ``io_type`` to the class and to fresh copies of its Input and Output classes."""

    def decorator(cls):
        cls.io_type = io_type
        cls.Input = type("Input", (cls.Input,), {"Parent": cls})
        cls.Output = type("Output", (cls.Output,), {"Parent": cls})
        return cls

    return decorator


def Custom(io_type: str) -> type[ComfyTypeIO]:
    @comfytype(io_type=io_type)
    class CustomComfyType(ComfyTypeIO):
        pass

    return CustomComfyType


@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(
            self,
            id,
            display_name=None,
            optional=False,
            tooltip=None,
            lazy=None,
            default=None,
            label_on=None,
            label_off=None,
            socketless=None,
            force_input=None,
            extra_dict=None,
            raw_link=None,
        ):
            super().__init__(
                id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict, raw_link
            )
            self.label_on = label_on
            self.label_off = label_off


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(
            self,
            id,
            display_name=None,
            optional=False,
            tooltip=None,
            lazy=None,
            default=None,
            min=None,
            max=None,
            step=None,
            control_after_generate=None,
            display_mode=None,
            socketless=None,
            force_input=None,
            extra_dict=None,
            raw_link=None,
        ):
            super().__init__(
                id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict, raw_link
            )
            self.min, self.max, self.step = min, max, step
            self.control_after_generate = control_after_generate
            self.display_mode = display_mode


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(
            self,
            id,
            display_name=None,
            optional=False,
            tooltip=None,
            lazy=None,
            default=None,
            min=None,
            max=None,
            step=None,
            round=None,
            display_mode=None,
            socketless=None,
            force_input=None,
            extra_dict=None,
            raw_link=None,
        ):
            super().__init__(
                id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict, raw_link
            )
            self.min, self.max, self.step, self.round = min, max, step, round
            self.display_mode = display_mode


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(
            self,
            id,
            display_name=None,
            optional=False,
            tooltip=None,
            lazy=None,
            multiline=False,
            placeholder=None,
            default=None,
            dynamic_prompts=None,
            socketless=None,
            force_input=None,
            extra_dict=None,
            raw_link=None,
        ):
            super().__init__(
                id, display_name, optional, tooltip, lazy, default, socketless, None, force_input, extra_dict, raw_link
            )
            self.multiline = multiline
            self.placeholder = placeholder
            self.dynamic_prompts = dynamic_prompts


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(
            self,
            id,
            options=None,
            display_name=None,
            optional=False,
            tooltip=None,
            lazy=None,
            default=None,
            control_after_generate=None,
            upload=None,
            image_folder=None,
            remote=None,
            socketless=None,
            extra_dict=None,
            raw_link=None,
        ):
            super().__init__(
                id, display_name, optional, tooltip, lazy, default, socketless, None, None, extra_dict, raw_link
            )
            self.multiselect = False
            self.options = options
            self.control_after_generate = control_after_generate
            self.upload = upload
            self.image_folder = image_folder
            self.remote = remote


@comfytype(io_type="MODEL")
class Model(ComfyTypeIO):
    pass


@comfytype(io_type="LATENT")
class Latent(ComfyTypeIO):
    pass


@comfytype(io_type="CONDITIONING")
class Conditioning(ComfyTypeIO):
    pass


@dataclass
class Schema:
    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list[Input] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    hidden: list = field(default_factory=list)
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self) -> None:
        """Input and output ids must be unique, within and between the two lists."""
        input_ids = [i.id for i in self.inputs]
        output_ids = [o.id for o in self.outputs]
        issues = []
        if len(set(input_ids)) != len(input_ids):
            issues.append(
                f"Input ids must be unique, but {[i for i, n in Counter(input_ids).items() if n > 1]} are not."
            )
        if len(set(output_ids)) != len(output_ids):
            issues.append(
                f"Output ids must be unique, but {[i for i, n in Counter(output_ids).items() if n > 1]} are not."
            )
        if set(input_ids) & set(output_ids):
            issues.append(
                f"Ids must be unique between inputs and outputs, but {set(input_ids) & set(output_ids)} are not."
            )
        if issues:
            raise ValueError("\n".join(issues))
        for item in [*self.inputs, *self.outputs]:
            item.validate()

    def finalize(self) -> None:
        """Give outputs without ids default ids."""
        for i, output in enumerate(self.outputs):
            if output.id is None:
                output.id = f"_{i}_{output.io_type}_"


class ComfyNode(ABC):
    SCHEMA = None

    @classmethod
    @abstractmethod
    def define_schema(cls) -> Schema: ...

    @classmethod
    @abstractmethod
    def execute(cls, **kwargs) -> NodeOutput: ...

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        if any(
            getattr(cls, name).__func__ is getattr(ComfyNode, name).__func__ for name in ("define_schema", "execute")
        ):
            raise Exception(f"No define_schema or execute function was defined for node class {cls.__name__}.")
        schema = cls.define_schema()
        schema.finalize()
        schema.validate()
        cls.SCHEMA = schema
        return schema


class NodeOutput:
    def __init__(self, *args: Any, ui=None, expand=None, block_execution=None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self):
        return self.args if len(self.args) > 0 else None

    def __getitem__(self, index):
        return self.args[index]
