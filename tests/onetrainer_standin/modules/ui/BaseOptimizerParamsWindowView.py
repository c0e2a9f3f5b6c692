"""Stand-in for ``build_dynamic_content`` in OneTrainer's ``modules/ui/BaseOptimizerParamsWindowView.py``
(commit 23df383), which both UIs (Qt and CTk) use for the optimizer settings window.

Kept: one widget per key of ``OPTIMIZER_DEFAULT_PARAMETERS[selected]`` that is also in
``KEY_DETAIL_MAP`` (a local table: keys it lacks get no widget), a switch for ``bool`` entries
and an entry field for the others, each with a label of the table's title. The table is cut to
the keys the integration writes, with OneTrainer's titles and types.
"""

from typing import Any

from modules.util.optimizer_util import OPTIMIZER_DEFAULT_PARAMETERS


class BaseOptimizerParamsWindowView:
    def __init__(self, components: Any) -> None:
        self.components = components

    def build_dynamic_content(
        self, master: Any, controller: Any, optimizer_ui_state: Any, update_user_pref_cb: Any, open_muon_adam_cb: Any
    ) -> None:
        KEY_DETAIL_MAP = {
            "amsgrad": {"title": "AMSGrad", "type": "bool"},
            "beta1": {"title": "Beta1", "type": "float"},
            "beta2": {"title": "Beta2", "type": "float"},
            "beta3": {"title": "Beta3", "type": "float"},
            "cautious": {"title": "Cautious", "type": "bool"},
            "clip_threshold": {"title": "Clip Threshold", "type": "float"},
            "d0": {"title": "Initial D", "type": "float"},
            "decay_rate": {"title": "Decay Rate", "type": "float"},
            "eps": {"title": "EPS", "type": "float"},
            "eps2": {"title": "EPS 2", "type": "float"},
            "fused_back_pass": {"title": "Fused Back Pass", "type": "bool"},
            "relative_step": {"title": "Relative Step", "type": "bool"},
            "scale_parameter": {"title": "Scale Parameter", "type": "bool"},
            "stochastic_rounding": {"title": "Stochastic Rounding", "type": "bool"},
            "warmup_init": {"title": "Warmup Initialization", "type": "bool"},
            "weight_decay": {"title": "Weight Decay", "type": "float"},
        }

        selected_optimizer = controller.config.optimizer.optimizer

        for index, key in enumerate(OPTIMIZER_DEFAULT_PARAMETERS[selected_optimizer].keys()):
            if key not in KEY_DETAIL_MAP:
                continue
            arg_info = KEY_DETAIL_MAP[key]
            row = (index // 2) + 1
            col = 3 * (index % 2)
            self.components.label(master, row, col, arg_info["title"])
            if arg_info["type"] != "bool":
                self.components.entry(master, row, col + 1, optimizer_ui_state, key, command=update_user_pref_cb)
            else:
                self.components.switch(master, row, col + 1, optimizer_ui_state, key, command=update_user_pref_cb)
