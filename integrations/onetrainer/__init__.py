"""onetrainer integration (in progress)."""
