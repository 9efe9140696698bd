"""Semi-supervised methods: labelled batch + unlabelled batch every step (``streams``).
:mod:`.common` holds the family's base (views, ramp-up, pseudo-labels); the methods are
``mean_teacher``, ``fixmatch`` (with UniMatch's additions), ``ctbct`` and ``dct``."""
