"""Stand-in for ComfyUI's comfy_api package (see tests/comfy_standin/README.md)."""
