"""Satellite scenes: pure geometry and grounded questions."""
