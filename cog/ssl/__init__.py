"""Self-supervised training: MoCHi hard negatives and the MoCo-v2 trainer."""
