"""Dedup: drop exact / near-duplicate text, near-duplicate images, repeated (image, question) pairs,
and rows contaminated by eval sets — each with its reason and the row it duplicates.

    dedup:
      text: {method: minhash, fields: [user, assistant], threshold: 0.85, num_perm: 128, shingle: 3}
      images: {method: phash, max_distance: 4, hash_size: 8}
      vqa_composite: true          # same image AND same question = duplicate; other questions stay
      against: [../eval/vqa-test, ../eval/images]    # saved datasets or image folders
      against_ngram: 8

Files: `spec` (the recipe section, pydantic only), `step` (DedupStep: key → fit → apply), `fit` and
`decide` (the reduce: stage order, first-seen rule, clusters), `against` and `eval_paths` (eval sets),
`state` (what fit hands to apply). The numpy kernels they call live in vlmdata/dedup/ and know
nothing of steps. This package exports the spec only, so importing it (the recipe does) loads no numpy.
"""

from vlmdata.steps.dedup.spec import DedupSpec, ImageDedup, TextDedup

__all__ = ["DedupSpec", "ImageDedup", "TextDedup"]
