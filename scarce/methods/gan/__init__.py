"""Synthetic-pair methods: a GAN pretrained on the split's training pairs generates more pairs.
:mod:`.pretrain` is the family's GAN machinery (mask→image GAN config and losses, the ONE cached,
seeded pretraining loop, cache key, gallery writer); :mod:`.base` the methods' base classes
(:class:`~.base.SyntheticPairMethod`, :class:`~.base.MaskToImageMethod`) and the mixed loss
L_real + λ·L_gen. The methods are ``e2eaug`` (3-level end-to-end optimisation), ``separate``
(frozen pretrained mask→image GAN) and ``gan_aug`` (image+mask pair GAN, networks in
:mod:`scarce.models.pair_gan`)."""
