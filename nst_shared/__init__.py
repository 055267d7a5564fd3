"""Torch-free code that the API, the workers, the engine's callers and the CLI share."""
