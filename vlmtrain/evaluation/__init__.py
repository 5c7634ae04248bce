"""Generation-based evaluation, scoring of outside predictions, loading a finished run, run reports."""
