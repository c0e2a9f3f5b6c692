"""Stand-in for ``create_optimizer`` in OneTrainer's ``modules/util/create.py`` (commit 23df383).

Kept: the signature; the checks before the ``match`` (no optimizer; a trained, layer-offloaded
part needs fused back pass when fine-tuning); the ``match`` on the member with one case per
member and **no default case**, so an unknown member gives ``None``; kwargs pulled from the
config fields with a fallback for empty ones and ``betas`` built as a tuple; and the state
restore: a state with ``param_group_mapping`` is regrouped by unique group name, a group being
restored only if ``param_group_optimizer_mapping`` names the same optimizer (``str(member)``),
taking ``lr``/``initial_lr`` from the new groups; an older state without the mapping only gets
``lr``/``initial_lr`` refreshed. Muon's split groups are left out.
"""

from typing import Any

import torch
from modules.util.config.TrainConfig import TrainConfig
from modules.util.enum.Optimizer import Optimizer
from modules.util.enum.TrainingMethod import TrainingMethod
from modules.util.NamedParameterGroup import NamedParameterGroupCollection


def _or(value: Any, default: Any) -> Any:
    return value if value is not None else default


def create_optimizer(
    parameter_group_collection: NamedParameterGroupCollection,
    state_dict: dict | None,
    config: TrainConfig,
    layer_key_fn: dict[int, str] | None = None,
) -> torch.optim.Optimizer | None:
    optimizer = None
    optimizer_config = config.optimizer

    if optimizer_config.optimizer is None:
        return None

    offloaded = any(part.offload_fraction > 0 and part.train for part in config.model_part_configs())
    fused = optimizer_config.optimizer.supports_fused_back_pass() and optimizer_config.fused_back_pass
    if offloaded and not fused and config.training_method == TrainingMethod.FINE_TUNE:
        raise RuntimeError('layer offloading can only be used for fine tuning with "fused_back_pass"')

    parameters = parameter_group_collection.parameters_for_optimizer(config)

    match config.optimizer.optimizer:
        case Optimizer.SGD:
            optimizer = torch.optim.SGD(
                params=parameters,
                lr=config.learning_rate,
                momentum=_or(optimizer_config.momentum, 0),
                weight_decay=_or(optimizer_config.weight_decay, 0),
            )
        case Optimizer.ADAMW:
            optimizer = torch.optim.AdamW(
                params=parameters,
                lr=config.learning_rate,
                betas=(_or(optimizer_config.beta1, 0.9), _or(optimizer_config.beta2, 0.999)),
                weight_decay=_or(optimizer_config.weight_decay, 1e-2),
                eps=_or(optimizer_config.eps, 1e-8),
            )
        case Optimizer.PRODIGY:
            import prodigyopt

            optimizer = prodigyopt.Prodigy(
                params=parameters,
                lr=config.learning_rate,
                betas=(_or(optimizer_config.beta1, 0.9), _or(optimizer_config.beta2, 0.999)),
                d0=_or(optimizer_config.d0, 1e-6),
            )
        case Optimizer.SCHEDULE_FREE_ADAMW:
            import schedulefree

            optimizer = schedulefree.AdamWScheduleFree(params=parameters, lr=config.learning_rate)

    if state_dict is not None and optimizer is not None:
        if "param_group_mapping" not in state_dict:
            # older saves: the same groups in the same order
            for saved_group, group in zip(state_dict["param_groups"], parameters):
                saved_group["lr"] = group["lr"]
                saved_group["initial_lr"] = group["initial_lr"]
        else:
            saved_names = state_dict["param_group_mapping"]
            saved_optimizers = state_dict["param_group_optimizer_mapping"]
            current_groups = optimizer.state_dict()["param_groups"]
            names = parameter_group_collection.unique_name_mapping

            new_state, new_groups, next_index = {}, [], 0
            for position, name in enumerate(names):
                current = current_groups[position]
                if name in saved_names and saved_optimizers[saved_names.index(name)] == str(config.optimizer.optimizer):
                    saved = state_dict["param_groups"][saved_names.index(name)]
                    renumbered = []
                    for saved_index in saved["params"]:
                        if saved_index in state_dict["state"]:
                            new_state[next_index] = state_dict["state"][saved_index]
                        renumbered.append(next_index)
                        next_index += 1
                    saved["params"] = renumbered
                    saved["lr"] = current["lr"]
                    saved["initial_lr"] = current["initial_lr"]
                    new_groups.append(saved)
                else:
                    current["params"] = list(range(next_index, next_index + len(current["params"])))
                    next_index += len(current["params"])
                    new_groups.append(current)

            state_dict["state"] = new_state
            state_dict["param_groups"] = new_groups

        optimizer.load_state_dict(state_dict)

    return optimizer
