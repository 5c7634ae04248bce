"""Exports for the trainers and evaluators people already use, one format per file."""
