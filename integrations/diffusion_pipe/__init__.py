"""diffusion_pipe integration (in progress)."""
