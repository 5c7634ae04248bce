"""Deduplication and decontamination helpers, numpy only (the `dedup` step in steps/dedup.py uses them).

- `phash`: fast perceptual hashes (JPEG draft decoding + a matrix DCT) and a parallel hashing helper.
- `hamming`: all pairs within a Hamming distance by multi-index hashing, never all pairs.
- `unionfind`: connected components whose label is the smallest member (= first seen row).
- `shingles` / `minhash`: vectorised word shingles, MinHash signatures and LSH banding.
- `textnorm`: the text a row is compared on, normalised.
- `against`: eval sets (a saved dataset or an image folder) read for decontamination.
- `decide` / `fit`: the step's reduce (stage order, first-seen rule, image clusters, contamination).
"""
