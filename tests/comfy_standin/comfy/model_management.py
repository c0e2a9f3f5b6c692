"""Stand-in for comfy/model_management.py: only load_models_gpu (CPU here)."""

from __future__ import annotations

#: The patchers loaded by the last call, for tests to look at.
current_loaded_models: list = []


def load_models_gpu(
    models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False
):
    for model in models:
        model.load()
    current_loaded_models[:] = models
