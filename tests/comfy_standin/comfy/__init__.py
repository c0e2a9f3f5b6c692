"""Stand-in for ComfyUI's comfy package (see tests/comfy_standin/README.md)."""
