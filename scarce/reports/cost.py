"""What a run's labels cost a person, in minutes: the report's ``annotation_minutes`` column.

Why: weak supervision exists to label many images cheaply, so comparing it with full masks at an
equal *number of images* hides its point; at equal *annotation time* the comparison is the one a
person planning an annotation budget needs. The cost model gives each label kind a time per
image (:data:`SECONDS_PER_IMAGE`), all from one study that timed the three kinds the same way:

==========  =============  ====================================================================
label       s per image    source
==========  =============  ====================================================================
mask        239.7          Bearman et al., "What's the Point: Semantic Segmentation with Point
                           Supervision", ECCV 2016: full per-pixel annotation, PASCAL VOC 2012
scribble    34.9           same study: squiggle-level supervision (one stroke per class)
click       22.1           same study: point-level supervision (one point per class)
==========  =============  ====================================================================

These are natural images with several objects each, timed with crowd annotators; a medical image
usually holds one or two structures but its outline is traced by an expert, more slowly. The
numbers are a documented prior for putting regimes side by side, not a measurement of anyone's
annotators: time your own and pass them as ``seconds`` (docs/annotate.md).

A run's minutes = training images × their kind's seconds + validation images × a mask's seconds
(choosing a checkpoint needs masks; a run validated on held-out scribbled pixels has none), / 60.
Unlabelled images cost nothing; test images are not counted (every regime needs the same ones).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from scarce.utils.runfolder import SPLIT_FILE

SECONDS_PER_IMAGE: dict[str, float] = {"mask": 239.7, "scribble": 34.9, "click": 22.1}
"""Seconds a person spends per image for each label kind (sources: module docstring)."""
SOURCE = ("Bearman, Russakovsky, Ferrari, Fei-Fei: What's the Point: Semantic Segmentation with Point "
          "Supervision. ECCV 2016 (PASCAL VOC 2012 annotation times)")


def label_kind(method: Mapping[str, Any]) -> str:
    """``mask``, ``scribble`` or ``click``: what the training images of a run with this method
    section are labelled with. A weak method's synthetic scribbles of length 0 are clicks; drawn
    scribbles (``method.scribbles`` auto or a folder) count as scribbles."""
    from scarce.methods import method_spec

    try:
        spec = method_spec(dict(method))
    except (KeyError, TypeError, ValueError):
        return "mask"
    if getattr(spec.cls, "labels", "masks") != "scribbles":
        return "mask"
    length = spec.axes().get("scribble_length", math.nan)
    return "click" if length == 0.0 else "scribble"


def minutes(n_train: int, n_val: int, kind: str, seconds: Mapping[str, float] | None = None) -> float:
    """Minutes of ``n_train`` training images labelled with ``kind`` (:func:`label_kind`) and
    ``n_val`` validation masks (rule: module docstring); ``seconds`` overrides
    :data:`SECONDS_PER_IMAGE` entries."""
    secs = {**SECONDS_PER_IMAGE, **(seconds or {})}
    return (n_train * secs[kind] + n_val * secs["mask"]) / 60.0


def annotation_minutes(run_dir: str | Path, cfg: Mapping[str, Any],
                       seconds: Mapping[str, float] | None = None) -> float:
    """Minutes of annotation behind a finished run (rule: module docstring), from its
    ``split.json``; NaN when the run folder has none. ``seconds`` overrides
    :data:`SECONDS_PER_IMAGE` entries (your own annotators' times)."""
    try:
        split = json.loads((Path(run_dir) / SPLIT_FILE).read_text())
        n_train, n_val = len(split["train"]), len(split["val"])
    except (OSError, ValueError, KeyError, TypeError):
        return math.nan
    method = cfg.get("method") if isinstance(cfg.get("method"), Mapping) else {}
    return minutes(n_train, n_val, label_kind(method), seconds)


def planned_minutes(cfg: Mapping[str, Any], seconds: Mapping[str, float] | None = None
                    ) -> tuple[float, int, int, str]:
    """``(minutes, training images, validation images, label kind)`` of a run before it trains:
    the split its data layer would make (:func:`scarce.data.load.split_for_config`: the
    dataset's file names only, no pixel decoded, nothing written), costed as
    :func:`annotation_minutes` costs the finished run. ``cfg``: a resolved config mapping (a
    grid's ``RunSpec.config``, a run's ``config.yaml``). Why: to size budgets so regimes get
    equal annotation time, before hours of training; e.g. for every run of a grid::

        from scarce.experiments import expand_grid, load_grid
        for s in expand_grid(load_grid("configs/annotate/equal_time.yaml")):
            print(s.run_dir, planned_minutes(s.config))
    """
    from scarce.config import RunConfig, from_dict
    from scarce.data.load import split_for_config
    from scarce.methods import method_spec

    run = from_dict(RunConfig, cfg)
    spec = method_spec(run)
    split = split_for_config(run.data, run.train.seed, scribbles=bool(spec.cls.scribble_files(spec.config)))
    method = cfg.get("method") if isinstance(cfg.get("method"), Mapping) else {}
    kind = label_kind(method)
    return minutes(len(split.train), len(split.val), kind, seconds), len(split.train), len(split.val), kind


__all__ = ["SECONDS_PER_IMAGE", "SOURCE", "annotation_minutes", "label_kind", "minutes", "planned_minutes"]
