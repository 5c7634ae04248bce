"""Build stages. Each stage is a step class that knows nothing of engines (see steps/base.py)."""
