"""Feature compression estimators (TLDR, PCA-whitening) and their files."""
