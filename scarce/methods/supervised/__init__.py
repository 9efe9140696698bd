"""Fully supervised methods: the classic-augmentation baselines (None/Rotate/Flip/Translate/Combine,
optionally with nnU-Net intensity augmentation)."""
