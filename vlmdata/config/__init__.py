"""Reading and checking configs: YAML io, path fields, limits, sizes, and the all-at-once error list."""
