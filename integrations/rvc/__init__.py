"""rvc integration (in progress)."""
