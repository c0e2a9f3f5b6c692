"""Stand-in for comfy/samplers.py: Sampler and CFGGuider, as a custom Sampler sees them."""

from __future__ import annotations

import comfy.model_management


class Sampler:
    def sample(self):
        pass


class CFGGuider:
    """``sample()`` loads the model and hands the sampler itself as ``model_wrap``, like the real guider."""

    def __init__(self, model_patcher) -> None:
        self.model_patcher = model_patcher
        self.model_options = model_patcher.model_options
        self.original_conds: dict = {}
        self.cfg = 1.0

    def inner_set_conds(self, conds: dict) -> None:
        self.original_conds = {key: list(value) for key, value in conds.items()}

    def __call__(self, x, timestep, model_options=None, seed=None):
        return self.inner_model.apply_model(x, timestep, self.conds["positive"])

    def sample(
        self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False, seed=None
    ):
        comfy.model_management.load_models_gpu([self.model_patcher])
        self.inner_model = self.model_patcher.model
        self.conds = {key: list(value) for key, value in self.original_conds.items()}
        extra_args = {"model_options": self.model_options, "seed": seed}
        try:
            return sampler.sample(self, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
        finally:
            del self.inner_model, self.conds
