"""The embedding stage: images (and texts where a step asks) → unit vectors from a CLIP-like model.

- `spec`: the recipe's `embed:` section (torch-free; validation never imports torch).
- `cache`: embeddings by content hash in one SQLite file, so a second build re-embeds nothing.
- `model`: the model itself (transformers AutoModel + AutoProcessor, or open_clip); imports torch.
- `step`: the `embed` map step that attaches vectors to rows for filters and dedup to read.
"""
