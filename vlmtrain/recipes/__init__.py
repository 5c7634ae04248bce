"""One file per kind of run, each read top to bottom: setup, train, save, cleanup."""
