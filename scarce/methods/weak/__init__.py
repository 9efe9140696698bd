"""Weak supervision from scribbles/clicks (robust trust region paper): :mod:`.common` (scribble
loading, partial cross-entropy), :mod:`.stage_a` (graph-cut/trust-region proposals) and the methods
``pce_gd``, ``grid_gd``, ``dense_gd``, ``grid_tr``."""
