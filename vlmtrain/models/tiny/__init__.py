"""Tiny random-weight VLMs built offline from config objects, one builder per family."""
