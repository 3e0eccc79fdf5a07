"""Shared test helpers: running the real CLI, the real receiver."""
