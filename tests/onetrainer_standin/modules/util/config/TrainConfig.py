"""Stand-in for OneTrainer's ``modules/util/config/TrainConfig.py`` (commit 23df383).

``TrainOptimizerConfig`` keeps the fields the integration can map (and a few it must leave
alone), with OneTrainer's defaults, types and nullability. ``TrainConfig`` keeps what
``create_optimizer``, ``parameters_for_optimizer`` and the fused back pass read, what a preset
sets besides the optimizer (model type, base model), and OneTrainer's ``config_version`` 11.
"""

from typing import Any

from modules.util.config.BaseConfig import BaseConfig
from modules.util.enum.ModelType import ModelType
from modules.util.enum.Optimizer import Optimizer
from modules.util.enum.TrainingMethod import TrainingMethod


class TrainOptimizerConfig(BaseConfig):
    @staticmethod
    def default_values() -> "TrainOptimizerConfig":
        # name, default value, data type, nullable (as in OneTrainer)
        data: list[tuple[str, Any, Any, bool]] = [
            ("optimizer", Optimizer.ADAMW, Optimizer, False),
            ("amsgrad", False, bool, False),
            ("beta1", None, float, True),
            ("beta2", None, float, True),
            ("beta3", None, float, True),
            ("block_wise", False, bool, False),
            ("clip_threshold", None, float, True),
            ("d0", None, float, True),
            ("d_coef", None, float, True),
            ("decay_rate", None, float, True),
            ("decouple", False, bool, False),
            ("eps", None, float, True),
            ("eps2", None, float, True),
            ("foreach", False, bool, True),
            ("fsdp_in_use", False, bool, False),
            ("fused", False, bool, False),
            ("fused_back_pass", False, bool, False),
            ("growth_rate", None, float, True),
            ("is_paged", False, bool, False),
            ("min_8bit_size", None, int, True),
            ("momentum", None, float, True),
            ("optim_bits", None, int, True),
            ("percentile_clipping", None, int, True),
            ("relative_step", False, bool, False),
            ("safeguard_warmup", False, bool, False),
            ("scale_parameter", False, bool, False),
            ("stochastic_rounding", True, bool, False),
            ("use_bias_correction", False, bool, False),
            ("warmup_init", False, bool, False),
            ("weight_decay", None, float, True),
            ("slice_p", None, int, True),
            ("cautious", False, bool, False),
            ("use_orthograd", False, bool, False),
            ("MuonWithAuxAdam", False, bool, False),
            ("muon_adam_config", {}, dict, True),
        ]
        return TrainOptimizerConfig(data)


class TrainModelPartConfig(BaseConfig):
    @staticmethod
    def default_values() -> "TrainModelPartConfig":
        data: list[tuple[str, Any, Any, bool]] = [
            ("train", True, bool, False),
            ("learning_rate", None, float, True),
            ("offload_fraction", 0.0, float, False),
        ]
        return TrainModelPartConfig(data)


class TrainConfig(BaseConfig):
    def __init__(self, data: list[tuple[str, Any, Any, bool]]) -> None:
        super().__init__(data, config_version=11, config_migrations={})

    def model_part_configs(self) -> list[TrainModelPartConfig]:
        return [self.unet, self.text_encoder]

    @staticmethod
    def default_values() -> "TrainConfig":
        data: list[tuple[str, Any, Any, bool]] = [
            ("training_method", TrainingMethod.FINE_TUNE, TrainingMethod, False),
            ("model_type", ModelType.STABLE_DIFFUSION_15, ModelType, False),
            ("base_model_name", "stable-diffusion-v1-5/stable-diffusion-v1-5", str, False),
            ("learning_rate", 3e-6, float, False),
            ("clip_grad_norm", 1.0, float, True),
            ("unet", TrainModelPartConfig.default_values(), TrainModelPartConfig, False),
            ("text_encoder", TrainModelPartConfig.default_values(), TrainModelPartConfig, False),
            ("optimizer", TrainOptimizerConfig.default_values(), TrainOptimizerConfig, False),
            ("optimizer_defaults", {}, dict[str, TrainOptimizerConfig], False),
        ]
        return TrainConfig(data)
