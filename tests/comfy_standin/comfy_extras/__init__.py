"""Stand-in for ComfyUI's comfy_extras package (see tests/comfy_standin/README.md)."""
