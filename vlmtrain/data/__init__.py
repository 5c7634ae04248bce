"""Rows into batches: opening a vlmdata output, chat rendering, collation, sampling, packing, diagnostics."""
