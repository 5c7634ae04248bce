"""vlmdata: build visual instruction datasets from a declarative YAML recipe.

`vlmdata build recipes/medical.yaml` loads sources, turns labels into chat turns and writes a
`datasets`-loadable DatasetDict with a manifest, a dataset card and every rejected row with its reason.
"""

__version__ = "0.1.0"
