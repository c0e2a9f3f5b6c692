"""Stand-in for the fused back pass of OneTrainer's ``modules/trainer/GenericTrainer.py`` (commit 23df383).

``__apply_fused_back_pass`` keeps OneTrainer's structure, which decides what ``step_parameter``
receives: a loop over ``optimizer.param_groups`` and their tensors that, for each tensor needing
a gradient, defines ``__optimizer_step(tensor, param_group=param_group, i=i)`` (optional
per-tensor gradient clipping, ``optimizer.step_parameter(tensor, param_group, i)``, then
``tensor.grad = None``) and ``__grad_hook(tensor, param_group=param_group, i=i)``, which calls
``__optimizer_step(tensor)`` by name on update steps, and registers the hook with
``register_post_accumulate_grad_hook``. The hook looks ``__optimizer_step`` up when it runs, so
every hook calls the last definition, with the last group and index as its defaults. The grad
scaler and multi-GPU gradient reduction are left out (they reach ``step_parameter`` the same way).
``train`` is the loop around it: backward, then ``step()`` unless the back pass stepped already,
and ``zero_grad(set_to_none=True)``.
"""

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn


class GenericTrainer:
    def __init__(self, config: Any, model: Any) -> None:
        self.config = config
        self.model = model
        self.grad_hook_handles: list[Any] = []

    def __apply_fused_back_pass(self) -> None:
        fused_optimizer_step = (
            self.config.optimizer.optimizer.supports_fused_back_pass() and self.config.optimizer.fused_back_pass
        )
        if not fused_optimizer_step:
            return

        for param_group in self.model.optimizer.param_groups:
            for i, parameter in enumerate(param_group["params"]):
                if parameter.requires_grad:

                    def __optimizer_step(tensor: Tensor, param_group=param_group, i=i) -> None:
                        if self.config.clip_grad_norm is not None:
                            nn.utils.clip_grad_norm_(tensor, self.config.clip_grad_norm)
                        self.model.optimizer.step_parameter(tensor, param_group, i)
                        tensor.grad = None

                    def __grad_hook(tensor: Tensor, param_group=param_group, i=i) -> None:
                        __optimizer_step(tensor)

                    handle = parameter.register_post_accumulate_grad_hook(__grad_hook)
                    self.grad_hook_handles.append(handle)

    def train(self, loss_of_step: Callable[[int], Tensor], steps: int) -> None:
        self.__apply_fused_back_pass()
        fused = self.config.optimizer.optimizer.supports_fused_back_pass() and self.config.optimizer.fused_back_pass
        for step in range(steps):
            loss_of_step(step).backward()
            if not fused:
                self.model.optimizer.step()
            self.model.optimizer.zero_grad(set_to_none=True)
        for handle in self.grad_hook_handles:
            handle.remove()
