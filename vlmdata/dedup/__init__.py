"""Deduplication kernels, numpy only; they know nothing of steps (the `dedup` step in steps/dedup/ uses them).

- `phash`: fast perceptual hashes (JPEG draft decoding + a matrix DCT) and a parallel hashing helper.
- `hamming`: all pairs within a Hamming distance by multi-index hashing, never all pairs.
- `unionfind`: connected components whose label is the smallest member (= first seen row).
- `shingles` / `minhash`: vectorised word shingles, MinHash signatures and LSH banding.
- `textnorm`: the text a row is compared on, normalised.
- `semantic`: SemDeDup (k-means, cosine pairs within clusters, which row of a group stays).
"""
