"""Row filters, one per file. Each has a recipe spec (pydantic, `build()` makes the step) and a
`FilterStep` that answers `keep(row) -> True | "reason"`. `vlmdata.steps.filter` lists them under
their YAML names and parses the recipe's `filter:` list.
"""
