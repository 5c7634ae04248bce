"""Model families, loading, quantisation, adapters, saving, and the tiny offline test models."""
