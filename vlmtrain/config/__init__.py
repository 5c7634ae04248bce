"""The training config: pydantic only and torch-free, checking everything that can be checked without a model."""
