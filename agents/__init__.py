"""Agent framework and built-in prediction agents (coming in a later release)."""
