"""``scarce robustness`` lives in :mod:`scarce.experiments.robustness`; this name stays importable."""
from scarce.experiments.robustness import PER_RUN_DIR, run_robustness

__all__ = ["run_robustness", "PER_RUN_DIR"]
