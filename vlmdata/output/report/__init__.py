"""What a build leaves for people: the manifest (machine-readable) and the dataset card."""
