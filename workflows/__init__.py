"""Workflows: deterministic orchestration only. No I/O, clock or randomness of their own."""
