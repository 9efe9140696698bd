"""Few-label splits: nested across budgets, deterministic per seed, never touching the test set.

Why nested: comparing budgets 40 / 100 / 200 is only fair when the 40 labelled images are part
of the 100 (the paper's protocol). One permutation of the sorted pool (``default_rng(seed)``) is
divided into a *val stream* (positions 0, 5, 10, ... for val_fraction 0.2) and a *train stream*
(the rest); budget N takes the first round(N·val_fraction) of the val stream and the first
N − n_val of the train stream: 40 → 32 + 8, 100 → 80 + 20, 9 → 7 + 2.

Test set: the dataset's official test split when it has one, else a FIXED held-out 20% chosen
with :data:`HELD_OUT_SEED` (independent of the run seed), so it never overlaps any budget.

Volumes (NIfTI/DICOM sliced into 2D images): the unit of every split is the volume, never the
slice (``groups``: slice stem → volume stem). Budgets, the validation share and the held-out
test part count volumes; each part then holds all slices of its volumes, so no slice of a test
volume's neighbour is ever trained on.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from scarce.data.types import DataError
from scarce.utils.io import atomic_write_json

HELD_OUT_SEED = 20260101
SPLIT_KEYS = ("dataset", "seed", "budget", "train", "val", "test")
"""Keys every ``split.json`` that :meth:`Split.save` writes holds (:func:`is_split_file`)."""
HELD_OUT_FRACTION = 0.2


def is_split_file(path: Path) -> bool:
    """True when ``path`` is a split file scarce wrote (JSON with :data:`SPLIT_KEYS`):
    ``data split --out FILE --overwrite`` replaces only such a file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and all(k in data for k in SPLIT_KEYS)


@dataclass
class Split:
    """Stems of one run's labelled train/val sets and the ID test set."""

    dataset: str
    seed: int
    budget: int
    train: list[str]
    val: list[str]
    test: list[str]
    pool_size: int
    val_fraction: float = 0.2
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        """Write ``split.json`` atomically (so a run can be repeated on the same stems)."""
        atomic_write_json(path, self.to_json())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Split":
        try:
            return cls(**data)
        except TypeError as e:
            raise DataError(f"split data has unexpected fields ({e}); was it written by "
                            f"Split.save?") from None

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise DataError(f"split file {p} does not exist") from None
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read split file {p}: {e}; re-create it") from None
        return cls.from_json(data)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def _val_positions(n: int, val_fraction: float) -> np.ndarray:
    """Boolean mask: position i belongs to the val stream (0, 5, 10, ... for 0.2)."""
    f = Fraction(val_fraction).limit_denominator(10000)
    i = np.arange(n, dtype=np.int64)
    ceil = lambda a: -((-a * f.numerator) // f.denominator)  # noqa: E731
    return ceil(i) != ceil(i + 1)


def make_split(pool_stems: Sequence[str], test_stems: Sequence[str], budget: int | str, seed: int,
               val_fraction: float = 0.2, dataset: str = "", selected: Sequence[str] | None = None) -> Split:
    """Budget-``N`` labelled split of ``pool_stems`` (train + val = N), nested across budgets.

    ``budget`` ``"all"`` or ``<= 0`` takes the whole pool. A budget larger than the pool raises DataError.

    ``selected``: the training images chosen by a selection strategy (``data.selection``,
    :mod:`scarce.suggest`) instead of the train stream's prefix; the validation images stay the
    budget's own. Each must be a :func:`selection_candidates` stem (never a validation image of
    any budget, never a test image), at most the budget's training count (fewer: an intermediate
    round of the selection); else DataError.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    pool = sorted(set(pool_stems))
    test = sorted(set(test_stems))
    overlap = set(pool) & set(test)
    if overlap:
        raise DataError(f"{len(overlap)} stems are both in the labelled pool and the test set "
                        f"(e.g. {sorted(overlap)[0]!r}); check split.csv")
    n_pool = len(pool)
    if budget == "all" or budget <= 0:
        budget = n_pool
    if budget > n_pool:
        name = f" of {dataset!r}" if dataset else ""
        raise DataError(f"budget {budget} is larger than the labelled pool{name}: only {n_pool} "
                        f"images are available (test images excluded); choose data.budget <= "
                        f"{n_pool} (data.budget=all takes all {n_pool})")
    rng = np.random.default_rng(seed)
    perm = [pool[i] for i in rng.permutation(n_pool)]
    is_val = _val_positions(n_pool, val_fraction)
    val_stream = [s for s, v in zip(perm, is_val) if v]
    train_stream = [s for s, v in zip(perm, is_val) if not v]
    n_val = min(_round_half_up(budget * val_fraction), budget)
    n_train = budget - n_val
    # Streams may be short by one near budget == pool size: borrow from the other stream's tail.
    if n_train > len(train_stream):
        extra = n_train - len(train_stream)
        train = train_stream + val_stream[len(val_stream) - extra:]
        val = val_stream[:n_val]
    elif n_val > len(val_stream):
        extra = n_val - len(val_stream)
        val = val_stream + train_stream[len(train_stream) - extra:]
        train = train_stream[:n_train]
    else:
        train, val = train_stream[:n_train], val_stream[:n_val]
    if selected is not None:
        train = _check_selected(selected, _candidates(train_stream, train, val), n_train, dataset)
        budget = len(train) + len(val)
    return Split(dataset=dataset, seed=int(seed), budget=int(budget), train=train, val=val,
                 test=test, pool_size=n_pool, val_fraction=float(val_fraction))


def _candidates(train_stream: Sequence[str], train: Sequence[str], val: Sequence[str]) -> list[str]:
    """The train stream (plus what the random split borrowed from the val stream's tail near
    budget == pool), minus the budget's validation images, in stream order."""
    held = set(val)
    out = [s for s in train_stream if s not in held]
    seen = set(out)
    return out + [s for s in train if s not in seen and s not in held]


def selection_candidates(pool_stems: Sequence[str], test_stems: Sequence[str], budget: int | str, seed: int,
                         val_fraction: float = 0.2) -> list[str]:
    """Stems a selection strategy may choose as training images of a budget-``N`` split: the
    seed's train stream (the random split takes its first ``N − n_val``), never an image of the
    val stream (so no budget's validation image), never a test image. Stream order."""
    full = make_split(pool_stems, test_stems, budget, seed, val_fraction)
    pool = sorted(set(pool_stems))
    perm = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    is_val = _val_positions(len(pool), val_fraction)
    return _candidates([s for s, v in zip(perm, is_val) if not v], full.train, full.val)


def _check_selected(selected: Sequence[str], candidates: Sequence[str], n_train: int, dataset: str) -> list[str]:
    """``selected`` as a list, refused (DataError) when it repeats a stem, names a stem outside
    ``candidates`` (a validation or test image, or no image of the pool) or holds more than
    ``n_train`` stems."""
    chosen = [str(s) for s in selected]
    name = f" of {dataset!r}" if dataset else ""
    if len(set(chosen)) != len(chosen):
        dup = sorted({s for s in chosen if chosen.count(s) > 1})[0]
        raise DataError(f"data.selected names {dup!r} twice; each training image once")
    allowed = set(candidates)
    bad = [s for s in chosen if s not in allowed]
    if bad:
        raise DataError(f"data.selected holds {len(bad)} stems that are not selectable training images{name} "
                        f"(e.g. {bad[0]!r}: a validation or test image of the nested split, or no image of "
                        f"the pool); remove data.selected to choose again")
    if len(chosen) > n_train:
        raise DataError(f"data.selected holds {len(chosen)} training images but the budget has {n_train} "
                        f"(validation images excluded); remove data.selected to choose again or raise data.budget")
    if not chosen:
        raise DataError("data.selected is empty; remove it (the selection then chooses the training images)")
    return chosen


def held_out(stems: Sequence[str], fraction: float = HELD_OUT_FRACTION,
             seed: int = HELD_OUT_SEED) -> tuple[list[str], list[str]]:
    """Fixed (pool, test) partition for datasets without an official test split.

    Independent of the run seed, so every run/budget/seed shares one test set.
    """
    stems = sorted(set(stems))
    n_test = _round_half_up(len(stems) * fraction)
    perm = np.random.default_rng(seed).permutation(len(stems))
    test_idx = set(perm[:n_test].tolist())
    pool = [s for i, s in enumerate(stems) if i not in test_idx]
    test = [s for i, s in enumerate(stems) if i in test_idx]
    return pool, test


def group_members(stems: Sequence[str], groups: dict[str, str] | None) -> dict[str, list[str]]:
    """Unit → its stems (sorted): a volume's slices, or a 2D image alone (``groups``: stem → volume)."""
    out: dict[str, list[str]] = {}
    for s in sorted(stems):
        out.setdefault((groups or {}).get(s, s), []).append(s)
    return out


def _expand(units: Sequence[str], members: dict[str, list[str]]) -> list[str]:
    return [s for u in units for s in members.get(u, [])]


def make_group_split(pool_stems: Sequence[str], test_stems: Sequence[str], budget: int | str, seed: int,
                     val_fraction: float = 0.2, dataset: str = "", groups: dict[str, str] | None = None,
                     selected: Sequence[str] | None = None) -> Split:
    """:func:`make_split` over units (volumes; a 2D image is a unit of its own), then each part
    expanded to its units' stems: the slices of a volume always land in one part. Without
    ``groups`` it is :func:`make_split` itself. ``budget`` and ``pool_size`` count units;
    ``selected`` stems stand for their volumes."""
    if not groups:
        return make_split(pool_stems, test_stems, budget, seed, val_fraction, dataset, selected=selected)
    pool, test = group_members(pool_stems, groups), group_members(test_stems, groups)
    chosen = None if selected is None else list(dict.fromkeys(groups.get(s, s) for s in selected))
    split = make_split(list(pool), list(test), budget, seed, val_fraction, dataset, selected=chosen)
    split.train, split.val, split.test = (_expand(split.train, pool), _expand(split.val, pool),
                                          _expand(split.test, test))
    return split


def pool_and_test(stems: Sequence[str], splits: dict[str, str], train_split: str | None,
                  test_split: str | None, groups: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(labelled pool, ID test) stems of a folder given its split.csv and the dataset record.
    With ``groups`` (slice → volume) the held-out test part is drawn over volumes and expanded to
    their slices."""
    if groups:
        members = group_members(stems, groups)
        known = set(stems)
        unit_splits = {groups.get(s, s): v for s, v in splits.items() if s in known}
        pool_u, test_u = pool_and_test(list(members), unit_splits, train_split, test_split)
        return _expand(pool_u, members), _expand(test_u, members)
    stems = sorted(stems)
    if test_split is not None and splits:
        test = [s for s in stems if splits.get(s) == test_split]
        if not test:
            raise DataError(f"split.csv has no rows with split {test_split!r} (the official test "
                            f"split of this dataset); found: {sorted(set(splits.values()))}")
        if train_split is not None:
            pool = [s for s in stems if splits.get(s) == train_split]
        else:
            pool = [s for s in stems if splits.get(s) != test_split]
        return pool, test
    candidates = ([s for s in stems if splits.get(s) == train_split]
                  if (train_split is not None and splits) else stems)
    return held_out(candidates)


def adopt_saved_selection(new: Mapping[str, Any], saved: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` (a config dict) with ``data.selected`` of ``saved`` (a run's ``config.yaml``) when
    ``new`` asks for the same ``data.selection`` strategy and has not chosen yet: the images a
    run chose are the outcome of its selection, so a resumed or re-checked run is the same run
    and trains on the same images. Else ``new`` unchanged."""
    import copy

    nd, sd = new.get("data") or {}, saved.get("data") or {}
    sel = nd.get("selection", "random")
    if (sel in (None, "random") or nd.get("selected") is not None or sd.get("selection") != sel
            or not sd.get("selected")):
        return dict(new)
    out = copy.deepcopy(dict(new))
    out["data"]["selected"] = list(sd["selected"])
    return out
