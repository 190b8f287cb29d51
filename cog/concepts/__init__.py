"""Concepts: WordNet, information content, Lin similarity, levels, splits."""
