"""kohya integration (in progress)."""
