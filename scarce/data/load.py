"""Load dataset folders into tensors and assemble everything a run needs (:class:`RunData`).

Why one entry point: the trainer, the CLI and the experiment grid all call
:func:`prepare_run_data`, so dataset resolution, split, validation and caching behave the same
everywhere. All pairs a run uses are decoded and validated here — before any training or
output — so bad data fails fast with one :class:`DataError`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from scarce.config import ENV_DATA_ROOT, DataConfig, data_root
from scarce.data.cache import DecodeCache, get_cache
from scarce.data.folder import FolderIndex, list_images, scan_folder
from scarce.data.identity import file_digest, same_folder
from scarce.data.intensity import check_intensity
from scarce.data.registry import DATASETS, get_info
from scarce.data.scribble_data import load_scribble_sets, pixel_validation_note, scribble_split, scribble_split_needed
from scarce.data.splits import Split, group_members, make_group_split, pool_and_test, selection_candidates
from scarce.data.synthetic import ensure_synthetic
from scarce.data.types import DataError, DatasetInfo, ImageSet, RunData, SegData
from scarce.data.volumes import volume_options

if TYPE_CHECKING:
    from PIL import Image

SYNTHETIC = ("synthetic", "synthetic_ood")


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/scarce`` (default ``~/.cache/scarce``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scarce"


def _synthetic_root(cfg_root: str | None, cache_dir: str | None, n: int) -> Path:
    """Folder holding ``synthetic``/``synthetic_ood``: an existing one under the data root, else
    generated (once) into ``cache_dir`` or the user cache folder."""
    root = data_root(cfg_root)
    if root is not None and (root / "synthetic" / "images").is_dir():
        return root
    base = Path(cache_dir).expanduser() if cache_dir else user_cache_dir()
    return ensure_synthetic(base / f"synthetic-n{n}", n=n)


def existing_data_root(root: str | Path | None = None) -> Path | None:
    """:func:`scarce.config.data_root` (explicit ``root``, else $SCARCE_DATA_ROOT, else None),
    refusing one that is not a folder: a typo in the root must not read as "no dataset present".
    """
    base = data_root(None if root is None else str(root))
    if base is not None and not base.is_dir():
        origin = "--data-root / data.root" if root else f"${ENV_DATA_ROOT}"
        what = "is not a folder" if base.exists() else "does not exist"
        raise DataError(f"data root {base} {what} (from {origin}); point --data-root (or "
                        f"{ENV_DATA_ROOT}) at the folder that holds the dataset folders "
                        f"(isic2017/, busi/, ...)")
    return base


def resolve_dataset(name_or_path: str | Path, root: str | Path | None = None,
                    num_classes: int | None = None, synthetic_n: int = 160,
                    cache_dir: str | None = None) -> tuple[DatasetInfo, Path]:
    """(DatasetInfo, folder) of a registered name under ``root`` (or $SCARCE_DATA_ROOT), or of a
    folder path. Raises DataError when the root or the folder is missing."""
    text = str(name_or_path)
    if text in DATASETS and not Path(text).is_dir():
        info = DATASETS.get(text)
        if num_classes is not None and num_classes != info.num_classes:
            raise DataError(f"dataset {info.name!r} has {info.num_classes} classes "
                            f"({', '.join(info.classes)}); data.num_classes={num_classes} "
                            f"conflicts (it is only for unregistered folders): remove it, or "
                            f"pass the folder's path as data.dataset to use other label ids")
        if info.name in SYNTHETIC:
            base = _synthetic_root(None if root is None else str(root), cache_dir, synthetic_n)
            return info, base / info.folder_name
        base = existing_data_root(root)
        if base is None:
            raise DataError(f"dataset {info.name!r} needs a data root: pass --data-root DIR (or "
                            f"data.root) or set SCARCE_DATA_ROOT to the folder that holds "
                            f"{info.folder_name}/")
        folder = base / info.folder_name
        if not folder.is_dir():
            raise DataError(f"dataset {info.name!r} not found: {folder} does not exist; check "
                            f"--data-root / SCARCE_DATA_ROOT or convert the download with "
                            f"`scarce data import {info.name} SRC {folder}`")
        return info, folder
    info = get_info(text, num_classes)  # folder path (or KeyError with did-you-mean)
    return info, Path(text).expanduser()


def canonical_entry(entry: str, info: DatasetInfo, own_folder: Path | None, root: str | Path | None) -> str:
    """``entry`` (a test set or unlabelled source: name, folder, ``<name-or-folder>:<part>``) with
    a folder spelled as a path replaced by the name it stands for: the run's own dataset
    (``info.name``) when it is ``own_folder`` (or its ``images/``), a registered dataset when it
    is that dataset's folder under the data root — whatever the spelling (symlinks, ``..``,
    trailing ``/``). Other entries are returned unchanged. Why: the protocol's rules (the own
    dataset means its test part; an unlabelled source's OOD set is its test part) must not depend
    on how a user types a path."""
    text = str(entry)
    if Path(text).expanduser().is_dir():
        base, part = text, ""
    else:
        base, _, part = text.partition(":")
    folder = Path(base).expanduser()
    if not folder.is_dir():
        return text
    if folder.name == "images" and (folder.parent / "masks").is_dir():
        folder = folder.parent  # a dataset's images/ stands for the dataset
    suffix = f":{part}" if part else ""
    if own_folder is not None and same_folder(folder, own_folder):
        return info.name + suffix
    base_root = data_root(None if root is None else str(root))
    if base_root is not None:
        for name in DATASETS.names():
            o = DATASETS.get(name)
            if o.name not in SYNTHETIC and same_folder(folder, base_root / o.folder_name):
                return name + suffix
    return str(folder) + suffix if folder != Path(base).expanduser() else text


def load_folder(path_or_name: str | Path, size: int, root: str | Path | None = None,
                num_classes: int | None = None, stems: Sequence[str] | None = None,
                keep_orig: bool = False, cache: DecodeCache | str | Path | None = None,
                channels: int | None = None, name: str | None = None,
                intensity: str = "none", aspect: str = "squash") -> SegData:
    """Decode (or fetch from cache) pairs of a folder into a :class:`SegData`.

    Returns images float32 N×C×size×size in [0, 1] and masks int64 N×size×size label ids;
    ``orig_masks`` (H_i×W_i uint8) when ``keep_orig``. ``stems`` selects pairs (default: all,
    sorted). ``channels``/``num_classes`` default to the dataset's. ``cache``: a DecodeCache,
    a cache folder, or None (process-wide memory cache). ``intensity``: ``data.intensity``
    preprocessing (:mod:`scarce.data.intensity`); ``aspect``: ``data.aspect``.
    """
    if isinstance(path_or_name, SegData):  # pragma: no cover - defensive
        return path_or_name
    info, folder = resolve_dataset(path_or_name, root, num_classes)
    index = scan_folder(folder)
    return _load_index(index, info, size, stems, keep_orig, cache,
                       channels or info.channels, name or info.name,
                       num_classes or info.num_classes, intensity, aspect)


def to_float_images(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """C×S×S uint8 arrays → N×C×S×S float32 in [0, 1] (×1/255: the one conversion of the loader
    and of :func:`load_image`, so both give bit-identical model inputs)."""
    images = torch.from_numpy(np.stack(arrays)).to(torch.float32)
    return images.mul_(1.0 / 255.0)


def image_input(img: "Image.Image", size: int, intensity: str = "none", aspect: str = "squash") -> torch.Tensor:
    """A decoded PIL image (:func:`scarce.data.folder.read_image_pil`) → the model input
    1×C×size×size float32 in [0, 1]: exactly what training/evaluation loading feeds the model for
    the same file (same resize, ``data.intensity`` preprocessing and ×1/255). ``scarce predict``
    calls this for every image, so inference can never drift from training."""
    from scarce.data.cache import prepare_image

    return to_float_images([prepare_image(img, size, intensity, aspect)])


def load_image(path: str | Path, size: int, channels: int, intensity: str = "none", aspect: str = "squash"
               ) -> tuple[torch.Tensor, tuple[int, int]]:
    """One image file → (:func:`image_input`, the image's original (H, W))."""
    from scarce.data.folder import read_image_pil

    img = read_image_pil(path, channels=channels)
    return image_input(img, size, intensity, aspect), (img.height, img.width)


def _load_index(index: FolderIndex, info: DatasetInfo, size: int, stems: Sequence[str] | None,
                keep_orig: bool, cache: DecodeCache | str | Path | None, channels: int,
                name: str, num_classes: int, intensity: str = "none", aspect: str = "squash") -> SegData:
    if stems is None:
        stems = index.stems
    missing = [s for s in stems if s not in index.images]
    if missing:
        raise DataError(f"{len(missing)} requested stems (e.g. {missing[0]!r}) have no image in "
                        f"{index.root / 'images'}; was the split made for another folder?")
    dc = cache if isinstance(cache, DecodeCache) else get_cache(cache)
    pairs = [(index.images[s], index.masks[s]) for s in stems]
    decoded = dc.get_many(pairs, size, channels, num_classes, keep_orig, intensity=intensity, aspect=aspect)
    n = len(decoded)
    images = torch.empty((n, channels, size, size), dtype=torch.float32)
    masks = torch.empty((n, size, size), dtype=torch.int64)
    if n:
        images.copy_(to_float_images([d.image for d in decoded]))
        masks.copy_(torch.from_numpy(np.stack([d.mask for d in decoded])))
    return SegData(
        name=name, images=images, masks=masks, stems=list(stems), num_classes=num_classes,
        orig_masks=[d.orig for d in decoded] if keep_orig else None,  # type: ignore[misc]
        image_paths=[str(p[0]) for p in pairs], aspect=aspect)


def _small_pool(info: DatasetInfo, n_pool: int, budget: int | str) -> bool:
    """An unregistered folder with fewer labelled images than the default budget: it takes all."""
    return info.task == "custom" and budget == DataConfig.budget and n_pool < budget  # type: ignore[operator]


def dataset_split(info: DatasetInfo, index: FolderIndex, budget: int | str, seed: int,
                  val_fraction: float = 0.2, selected: Sequence[str] | None = None,
                  selection: str = "random", empty_slices: str = "keep") -> Split:
    """The run's :class:`Split` of a parsed folder (official test split or fixed held-out).

    ``budget`` ``"all"`` (or 0) takes every labelled image outside the test part. An unregistered
    folder with fewer such images than the default budget (``DataConfig.budget``, 40) takes all it
    has, with one warning line saying what was used (a first run on one's own 20 images works); a
    registered dataset, or any other budget, larger than the pool is refused (DataError).
    ``selected`` (``data.selected``): the training images a selection chose (validation and test
    as always; :func:`scarce.data.splits.make_split`); ``meta.selection`` then names ``selection``.

    Volumes (``index.groups``): every part holds whole volumes (the budget counts volumes), and
    ``empty_slices`` (``data.empty_slices``: keep | drop | subsample:K) thins the training part's
    slices without foreground; validation and test keep every slice."""
    pool, test = pool_and_test(index.stems, index.splits, info.train_split, info.test_split, index.groups)
    n_pool = len(group_members(pool, index.groups))  # volumes count once: splits never cut one
    small = _small_pool(info, n_pool, budget)
    split = make_group_split(pool, test, "all" if small else budget, seed, val_fraction, dataset=info.name,
                             groups=index.groups, selected=selected)
    unit = ("images" if not index.groups else "volumes" if len(index.groups) == len(index.stems)
            else "volumes and images")
    if small:
        sl = " slices" if index.groups else ""
        warnings.warn(f"data.budget={budget} (the default) is more than the {n_pool} labelled {unit} of "
                      f"{info.name!r} outside its {len(split.test)} test {'slices' if sl else 'images'}: using all {n_pool} "
                      f"({len(split.train)} training + {len(split.val)} validation{sl}); set data.budget=all for the "
                      f"same without this warning, or a smaller data.budget")  # one location: said once per process, however many callers
    split.meta = {"folder": str(index.root),
                  "test_source": "official" if (info.test_split and index.splits) else "held_out"}
    if index.groups:
        split.meta["units"] = "volumes"  # budget, pool_size: volumes (a 2D image counts as one)
        _drop_empty_slices(split, index, empty_slices)
    if selected is not None:
        split.meta["selection"] = str(selection)
    return split


def _drop_empty_slices(split: Split, index: FolderIndex, empty_slices: str) -> None:
    """``data.empty_slices`` on the training part of a volume split (reads the training mask
    volumes once, :mod:`scarce.data.volumes`); ``meta.empty_slices`` says what was left out."""
    from scarce.data.volumes import check_empty_slices, slice_has_foreground

    mode, k = check_empty_slices(empty_slices)
    if mode == "keep":
        return
    kept: list[str] = []
    seen: dict[str, int] = {}  # volume → empty slices met so far
    for s in split.train:
        if s not in index.groups or slice_has_foreground(index.masks[s]):
            kept.append(s)
            continue
        n = seen.get(index.groups[s], 0)
        seen[index.groups[s]] = n + 1
        if mode == "subsample" and n % k == 0:
            kept.append(s)
    split.meta["empty_slices"] = f"{empty_slices}: {len(split.train) - len(kept)} of {len(split.train)} training slices left out"
    split.train = kept


def split_candidates(info: DatasetInfo, index: FolderIndex, budget: int | str, seed: int,
                     val_fraction: float = 0.2) -> list[str]:
    """Stems :func:`dataset_split` accepts as ``selected`` for this budget and seed
    (:func:`scarce.data.splits.selection_candidates`: never a validation or test image)."""
    pool, test = pool_and_test(index.stems, index.splits, info.train_split, info.test_split, index.groups)
    small = _small_pool(info, len(group_members(pool, index.groups)), budget)
    if index.groups:  # volumes are chosen whole: candidates are the slices of candidate volumes
        members = group_members(pool, index.groups)
        units = selection_candidates(list(members), list(group_members(test, index.groups)),
                                     "all" if small else budget, seed, val_fraction)
        return [s for u in units for s in members[u]]
    return selection_candidates(pool, test, "all" if small else budget, seed, val_fraction)


def prepare_run_data(data_cfg: DataConfig, seed: int, with_unlabelled: bool = False,
                     cache: DecodeCache | None = None, monitor: Sequence[str] = (),
                     scribbles: bool = False) -> RunData:
    """Resolve the dataset, make the split (``split_seed`` or ``seed``) and load train, val and
    test sets (val/test keep original-resolution masks).

    Test sets: ``data_cfg.test_sets`` or [the ID test set, named after the dataset] + the
    dataset's OOD sets present under the root (all images of each; a missing one only warns).
    Entries may be registered names, folder paths, ``<name>:test`` (that set's test split) or
    the dataset's own name (its ID test split). ``with_unlabelled`` also loads the pool images
    outside the budget (for semi-supervised methods). ``monitor`` (``eval.monitor``): test sets
    for per-domain curves over training (:func:`monitor_sets`). ``scribbles``: the method learns
    from the folder's ``scribbles/`` files (a weak method with ``method.scribbles=auto``); in a
    folder being annotated its images are then chosen by :mod:`scarce.data.scribble_data`.
    """
    root = data_cfg.root
    info, folder = resolve_dataset(data_cfg.dataset, root, data_cfg.num_classes,
                                   data_cfg.synthetic_n, data_cfg.cache_dir)
    dc = cache or get_cache(data_cfg.cache_dir)
    # a semi-supervised run accepts images without masks in images/ (they join the pool)
    index = scan_folder(folder, allow_unlabelled=with_unlabelled, volume_options=volume_options(data_cfg))
    split_seed = data_cfg.split_seed if data_cfg.split_seed is not None else seed
    if scribbles and scribble_split_needed(index, info):
        return _prepare_scribble_run(data_cfg, info, index, split_seed, dc, monitor)
    split = dataset_split(info, index, data_cfg.budget, split_seed, data_cfg.val_fraction,
                          data_cfg.selected, data_cfg.selection, data_cfg.empty_slices)
    _warn_unused(info, index, with_unlabelled)
    if not split.train or not split.val:
        raise DataError(f"data.budget={split.budget} with data.val_fraction={data_cfg.val_fraction} "
                        f"gives {len(split.train)} training and {len(split.val)} validation images "
                        f"of {info.name!r}; training needs at least one of each (the best checkpoint "
                        f"is chosen on validation): use data.val_fraction > 0 and a larger data.budget "
                        f"(at least 3 with val_fraction 0.2)")
    size, ch, k = data_cfg.size, info.channels, info.num_classes
    intensity = check_intensity(data_cfg.intensity)

    def load(idx: FolderIndex, inf: DatasetInfo, stems: Sequence[str], name: str,
             keep: bool) -> SegData:
        return _load_index(idx, inf, size, stems, keep, dc, ch, name, k, intensity, data_cfg.aspect)

    train = load(index, info, split.train, info.name, False)
    val = load(index, info, split.val, info.name, True)
    # an explicit data.unlabelled changes the OOD test sets of every run (also the supervised
    # reference of a multi-domain grid), so all rows of a grid are scored on the same images
    pool_sets = (unlabelled_datasets(data_cfg, info, index.root) if (with_unlabelled or data_cfg.unlabelled is not None)
                 else set())
    pool = pool_items(data_cfg, info, index, split, split_seed) if with_unlabelled else None
    exclude = held_images(index, split, pool)
    tests = _load_tests(data_cfg, info, index, split, dc, pool_sets, exclude)
    unlabelled = _decode_pool(data_cfg, info, pool, dc) if pool is not None else None
    _check_foreground(info, size, train, [val], tests.get(info.name))
    watched = monitor_sets(data_cfg, monitor, info, index, split, dc, pool_sets, tests, exclude) if monitor else {}
    return RunData(info=info, train=train, val=val, tests=tests, split=split,
                   unlabelled=unlabelled, monitor=watched)


def _warn_unused(info: DatasetInfo, index: FolderIndex, with_unlabelled: bool) -> None:
    """One line when images of a folder being annotated are left out: a method that learns from
    masks trains on the masked images only."""
    if with_unlabelled or not index.unlabelled:
        return
    n_scribbled = len(set(index.unlabelled) & set(index.scribbles))
    warnings.warn(f"{len(index.unlabelled)} images of {info.name!r} have no mask ({n_scribbled} of them have a "
                  f"scribble): this method learns from masks and uses the {len(index.stems)} masked images only "
                  f"(the weak methods train on scribbles)", stacklevel=3)


def _prepare_scribble_run(data_cfg: DataConfig, info: DatasetInfo, index: FolderIndex, split_seed: int,
                          dc: DecodeCache, monitor: Sequence[str]) -> RunData:
    """:func:`prepare_run_data` for a weak method on a folder being annotated: the split of
    :func:`scarce.data.scribble_data.scribble_split`, training images with their scribbles, masked
    validation images (or held-out scribbled pixels) and the masked test part."""
    if data_cfg.selected is not None or str(data_cfg.selection) != "random":
        raise DataError(f"data.selection / data.selected choose masked training images, but this weak run trains on "
                        f"the scribbled images of {info.name!r} (data.budget of them); leave both unset")
    split = scribble_split(info, index, data_cfg.budget, split_seed, data_cfg.val_fraction, DataConfig.budget)
    size, ch, k = data_cfg.size, info.channels, info.num_classes
    intensity = check_intensity(data_cfg.intensity)

    def decode(pairs: list[tuple[Path, Path | None]]) -> tuple[torch.Tensor, list[np.ndarray | None]]:
        decoded = dc.get_many(pairs, size, ch, k, False, intensity=intensity, aspect=data_cfg.aspect)
        return to_float_images([d.image for d in decoded]), [d.mask for d in decoded]

    def load_masked(stems: list[str]) -> SegData:
        return _load_index(index, info, size, stems, True, dc, ch, info.name, k, intensity, data_cfg.aspect)

    train, val = load_scribble_sets(index, info, split, size, k, data_cfg.aspect, split_seed,
                                    data_cfg.val_fraction, decode, load_masked)
    tests = _load_tests(data_cfg, info, index, split, dc, set(), held_images(index, split))
    if not split.test:
        tests.pop(info.name, None)  # no masked test image: nothing to score on the dataset itself
    if val.partial:
        warnings.warn(pixel_validation_note(data_cfg.val_fraction, info.metric, bool(tests)), stacklevel=3)
    watched = monitor_sets(data_cfg, monitor, info, index, split, dc, set(), tests) if monitor else {}
    return RunData(info=info, train=train, val=val, tests=tests, split=split, monitor=watched)


def monitor_sets(data_cfg: DataConfig, entries: Sequence[str], info: DatasetInfo, index: FolderIndex,
                 split: Split, dc: DecodeCache, pool_sets: set[str], tests: dict[str, SegData],
                 exclude: dict[str, str] | None = None) -> dict[str, SegData]:
    """The ``eval.monitor`` sets, resolved as explicit ``data.test_sets`` entries (a missing one
    raises), except that a bare unlabelled source means its test part, as its default OOD set
    does: its other images are training data. Names are the test sets' names in ``metrics.json``;
    a set that is also a test set is shared, not held twice."""
    import dataclasses

    named = [canonical_entry(e, info, index.root, data_cfg.root) for e in map(str, entries)]
    wanted = [f"{e}:test" if e in pool_sets else e for e in named]
    loaded = _load_tests(dataclasses.replace(data_cfg, test_sets=wanted), info, index, split, dc, pool_sets, exclude)
    return {name: tests.get(name, d) for name, d in loaded.items()}


def _unlabelled_entries(data_cfg: DataConfig, info: DatasetInfo,
                        own_folder: Path | None = None) -> tuple[list[str], int | None]:
    """(entries, limit) of ``data.unlabelled`` (see :class:`~scarce.config.DataConfig`), each
    entry named as :func:`canonical_entry` names it."""
    spec = data_cfg.unlabelled
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "auto", "default")):
        return [info.name], None
    if isinstance(spec, bool):
        raise DataError(f"data.unlabelled={spec!r}: expected a number of images, a dataset/folder or a list")
    if isinstance(spec, int):
        if spec < 1:
            raise DataError(f"data.unlabelled={spec}: the number of unlabelled images must be >= 1 "
                            f"(or leave it unset for the whole pool)")
        return [info.name], int(spec)
    entries = [spec] if isinstance(spec, str) else list(spec)
    if not entries or not all(isinstance(e, str) and e.strip() for e in entries):
        raise DataError(f"data.unlabelled={spec!r}: expected dataset names / folders, e.g. "
                        f"--set data.unlabelled=[{info.name},cvc_clinicdb]")
    return [canonical_entry(e.strip(), info, own_folder, data_cfg.root) for e in entries], None


def unlabelled_datasets(data_cfg: DataConfig, info: DatasetInfo, own_folder: Path | None = None) -> set[str]:
    """Registered datasets other than the run's own that give unlabelled images (their default
    OOD test set is then their test part only, so no test image is ever unlabelled data), also
    when spelled as their folder."""
    out = set()
    for e in _unlabelled_entries(data_cfg, info, own_folder)[0]:
        base = e.partition(":")[0]
        if base not in (info.name, str(data_cfg.dataset)) and base in DATASETS and not Path(e).is_dir():
            out.add(base)
    return out


PoolItem = tuple[str, Path, str]
"""(stem, image path, domain) of one unlabelled image."""


def held_images(index: FolderIndex, split: Split, pool: Sequence[PoolItem] | None = None) -> dict[str, str]:
    """Content digest → why an image with those bytes may not be a test image of this run: the
    labelled training and validation images, and the unlabelled pool. Every OOD test set leaves
    such images out (:func:`_load_tests`), whatever folder they sit in."""
    held = {file_digest(p): "in the unlabelled pool" for _, p, _ in pool or ()}
    held.update({file_digest(index.images.get(s) or index.unlabelled[s]): "labelled training/validation images of "
                 "this run" for s in [*split.train, *split.val]})
    return held


def pool_items(data_cfg: DataConfig, info: DatasetInfo, index: FolderIndex, split: Split,
               seed: int) -> list[PoolItem]:
    """The unlabelled pool (``data.unlabelled``) as (stem, path, domain): no file is decoded and
    **no mask file is opened**.

    The run's own dataset contributes its pool minus the labelled train/val stems and minus the
    test part (plus any images without a mask in ``images/``); another registered dataset its
    training part (``pool_and_test``; never its test part); ``name:part`` that split.csv part
    (``test`` is refused); a folder its images (``images/`` or the folder itself). ``N`` draws
    N of the run's own pool with ``seed``. Folders are named by :func:`canonical_entry`, so a
    registered dataset or the run's own dataset spelled as a path follows its name's rules; then
    every image whose bytes equal a labelled, validation or test image of the run is dropped,
    whatever folder it came from, and the count is reported in a warning. Raises DataError for an
    empty pool."""
    entries, limit = _unlabelled_entries(data_cfg, info, index.root)
    used = set(split.train) | set(split.val) | set(split.test)
    items: list[PoolItem] = []
    for entry in entries:
        base, _, part = entry.partition(":") if not Path(entry).expanduser().is_dir() else (entry, "", "")
        if base in (info.name, str(data_cfg.dataset)) and not part:
            pool, _ = pool_and_test(index.stems, index.splits, info.train_split, info.test_split, index.groups)
            own = [s for s in pool if s not in used]
            extra = sorted(s for s in index.unlabelled  # images without a mask, unless in the test part
                           if not (info.test_split and index.splits.get(s) == info.test_split))
            chosen = [(s, index.images[s]) for s in own] + [(s, index.unlabelled[s]) for s in extra]
            if limit is not None:
                if limit > len(chosen):
                    raise DataError(f"data.unlabelled={limit} but {info.name!r} has only {len(chosen)} images "
                                    f"outside the labelled budget and the test part; use at most {len(chosen)}")
                order = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(int(seed) + 7919))
                chosen = [chosen[int(i)] for i in sorted(order[:limit].tolist())]
            domain = info.name
        elif Path(entry).expanduser().is_dir() and not (Path(entry).expanduser() / "masks").is_dir():
            folder = Path(entry).expanduser()
            img_dir = folder / "images" if (folder / "images").is_dir() else folder
            chosen = [(p.stem, p) for p in list_images(img_dir)]
            domain = folder.name
        else:
            o_info, o_folder = resolve_dataset(base, data_cfg.root, None, data_cfg.synthetic_n, data_cfg.cache_dir)
            o_index = scan_folder(o_folder, allow_unlabelled=True, volume_options=volume_options(data_cfg))
            if part == "test":
                raise DataError(f"data.unlabelled entry {entry!r} is a test part; test images are never "
                                f"unlabelled data (use {base!r} for its training part)")
            if part:
                o_stems = [s for s in sorted(set(o_index.images) | set(o_index.unlabelled))
                           if o_index.splits.get(s) == part]
                if not o_stems:
                    raise DataError(f"data.unlabelled entry {entry!r}: split.csv of {o_folder} has no {part!r} rows")
            else:
                o_stems = pool_and_test(o_index.stems, o_index.splits, o_info.train_split, o_info.test_split,
                                        o_index.groups)[0]
                o_stems += sorted(s for s in o_index.unlabelled
                                  if not (o_info.test_split and o_index.splits.get(s) == o_info.test_split))
            if Path(o_folder).resolve() == Path(index.root).resolve():
                o_stems = [s for s in o_stems if s not in used]
            chosen = [(s, o_index.images.get(s) or o_index.unlabelled[s]) for s in o_stems]
            domain = o_info.name if not part else entry
        items += [(s, Path(p), domain) for s, p in chosen]
    held = {file_digest(index.images[s]) for s in used if s in index.images}
    kept = [item for item in items if file_digest(item[1]) not in held]
    dropped = len(items) - len(kept)
    if dropped:
        warnings.warn(f"unlabelled pool: {dropped} of {len(items)} images left out: the same image (by content) "
                      f"is a labelled, validation or test image of this run", stacklevel=2)
    if not kept:
        raise DataError(f"data.unlabelled={data_cfg.unlabelled!r} gives no unlabelled images for {info.name!r} "
                        f"(the budget takes the whole pool, or every image is a labelled/validation/test image "
                        f"of the run); lower data.budget or add a dataset/folder")
    return kept


def _decode_pool(data_cfg: DataConfig, info: DatasetInfo, items: Sequence[PoolItem], dc: DecodeCache) -> ImageSet:
    """Decode :func:`pool_items` at ``data.size`` with the run's channels and ``data.intensity``."""
    size, ch = data_cfg.size, info.channels
    intensity = check_intensity(data_cfg.intensity)
    paths = [p for _, p, _ in items]
    decoded = dc.get_many([(p, None) for p in paths], size, ch, info.num_classes, False, intensity=intensity,
                          aspect=data_cfg.aspect)
    images = torch.empty((len(decoded), ch, size, size), dtype=torch.float32)
    images.copy_(to_float_images([d.image for d in decoded]))
    return ImageSet(name=f"{info.name}:unlabelled", images=images, stems=[s for s, _, _ in items],
                    image_paths=[str(p) for p in paths], domains=[d for _, _, d in items])


def load_unlabelled(data_cfg: DataConfig, info: DatasetInfo, index: FolderIndex, split: Split,
                    dc: DecodeCache, seed: int) -> ImageSet:
    """The unlabelled pool (:func:`pool_items`), decoded: images only, no mask file is opened."""
    return _decode_pool(data_cfg, info, pool_items(data_cfg, info, index, split, seed), dc)


def _check_foreground(info: DatasetInfo, size: int, train: SegData,
                      others: Sequence[SegData | None], id_test: SegData | None) -> None:
    """Refuse or warn before training when the training masks hold no foreground at all.

    Why: all-background masks (a 0..1 float mask saved as 8-bit, blank placeholder files, the
    wrong masks/ folder...) otherwise train silently to Dice 0. Uses the masks already in
    memory (no extra decoding). Train masks are checked at ``size`` (what training sees).

    * DataError when the training set, the validation set, the ID test set (which must be
      loaded: it is the large sample that rules out bad luck) and any unlabelled pool images
      are ALL background: the dataset's masks are broken and no run on it means anything.
    * A warning when only the training subset is empty: with a tiny budget on a dataset with
      legitimately empty masks (e.g. BUSI's "normal" images) that is bad luck of the split, and
      a budget × seed grid must not abort on it.
    """
    if bool(train.masks.any()):
        return

    def has_fg(d: SegData) -> bool:
        return any(bool(m.any()) for m in d.orig_masks) if d.orig_masks else bool(d.masks.any())

    what = ("check the mask files: foreground must be non-zero (255 or 1 for binary masks, ids "
            "1..K-1 for K classes; a 0..1 float mask saved as 8-bit becomes all 0) and masks/ "
            "must hold the masks of these images, not blank files")
    loaded = [d for d in [id_test, *others] if d is not None]
    elsewhere = any(has_fg(d) for d in loaded)
    if id_test is not None and not elsewhere:
        n = len(train) + sum(len(d) for d in loaded)
        raise DataError(f"every mask of {info.name!r} that this run loads ({n} masks: training, "
                        f"validation and test) is background (all 0), so training would learn "
                        f"nothing (Dice 0); {what}")
    luck = ("other labelled images do have foreground, so this is probably bad luck of the "
            "split: try another data.split_seed or a larger data.budget; else " if elsewhere
            else "")
    warnings.warn(f"all {len(train)} training masks of {info.name!r} are background (all 0) at "
                  f"data.size={size}, so training will learn nothing (Dice 0): {luck}{what}",
                  stacklevel=3)


def _load_tests(data_cfg: DataConfig, info: DatasetInfo, index: FolderIndex, split: Split,
                dc: DecodeCache, pool_sets: set[str] | None = None,
                exclude: dict[str, str] | None = None) -> dict[str, SegData]:
    """The run's test sets by name. Entries are named by :func:`canonical_entry` (so the run's own
    dataset, however spelled, means its test part, and a registered dataset's folder follows the
    name's rules); an OOD set leaves out every image whose bytes are in ``exclude`` (digest →
    why: :func:`held_images`), and its :class:`SegData` says how many and why."""
    root = data_cfg.root
    size, ch, k = data_cfg.size, info.channels, info.num_classes
    intensity = check_intensity(data_cfg.intensity)
    tests: dict[str, SegData] = {}
    explicit = data_cfg.test_sets is not None
    wanted = list(data_cfg.test_sets) if explicit else [info.name] + list(info.ood)  # type: ignore[arg-type]
    for raw in wanted:
        entry = canonical_entry(str(raw), info, index.root, root)
        if entry in (info.name, f"{info.name}:test", str(data_cfg.dataset)):
            tests[info.name] = _load_index(index, info, size, split.test, True, dc, ch, info.name, k,
                                           intensity, data_cfg.aspect)
            continue
        base, _, part = entry.partition(":") if not Path(entry).is_dir() else (entry, "", "")
        if base in (info.name, str(data_cfg.dataset)):
            raise DataError(f"test set {str(raw)!r} is the run's own dataset {info.name!r}, whose {part!r} part "
                            f"holds training images; its test images are the test set {info.name!r} (already "
                            f"scored): remove {str(raw)!r} from the test sets")
        if base in (pool_sets or set()) and not part:
            if explicit:
                raise DataError(f"test set {entry!r} is also an unlabelled source (data.unlabelled): its training "
                                f"images would be test images; use {base + ':test'!r} in data.test_sets")
            part, entry = "test", f"{base}:test"  # a default OOD set that gives unlabelled images: its test part
        try:
            o_info, o_folder = resolve_dataset(base, root, None, data_cfg.synthetic_n,
                                               data_cfg.cache_dir)
        except DataError as e:
            if explicit:
                raise
            warnings.warn(f"OOD test set {base!r} skipped: {e}", stacklevel=3)
            continue
        if o_info.num_classes != k:
            raise DataError(f"test set {base!r} has {o_info.num_classes} classes but "
                            f"{info.name!r} has {k}; pick a test set of the same task")
        o_index = scan_folder(o_folder, volume_options=volume_options(data_cfg))
        if part == "test":
            o_stems = pool_and_test(o_index.stems, o_index.splits, o_info.train_split,
                                    o_info.test_split, o_index.groups)[1]
        elif part:
            o_stems = o_index.with_split(part)
            if not o_stems:
                raise DataError(f"test set {entry!r}: split.csv of {o_folder} has no {part!r} rows")
        else:
            o_stems = o_index.stems
        name = entry if part else o_info.name
        left_out: dict[str, int] = {}
        if exclude:
            kept = []
            for s in o_stems:
                why = exclude.get(file_digest(o_index.images[s]))
                if why is None:
                    kept.append(s)
                else:
                    left_out[why] = left_out.get(why, 0) + 1
            o_stems = kept
        if not o_stems:
            raise DataError(f"test set {str(raw)!r}: every image is also {' or '.join(left_out)} (same content); "
                            f"nothing is left to score: remove it from the test sets")
        tests[name] = _load_index(o_index, o_info, size, o_stems, True, dc, ch, name, k, intensity, data_cfg.aspect)
        if left_out:
            tests[name].excluded = sum(left_out.values())
            tests[name].note = "; ".join(f"{n} image{'s' if n > 1 else ''} left out: {why} (same content)"
                                         for why, n in left_out.items())
    return tests


def _run_split(data_cfg: DataConfig, info: DatasetInfo, index: FolderIndex, split_seed: int,
               scribbles: bool) -> Split:
    """The split :func:`prepare_run_data` makes (``scribbles``: as there)."""
    if scribbles and scribble_split_needed(index, info):
        return scribble_split(info, index, data_cfg.budget, split_seed, data_cfg.val_fraction, DataConfig.budget)
    return dataset_split(info, index, data_cfg.budget, split_seed, data_cfg.val_fraction,
                         data_cfg.selected, data_cfg.selection, data_cfg.empty_slices)


def split_for_config(data_cfg: DataConfig, seed: int, scribbles: bool = False) -> Split:
    """The :class:`Split` :func:`prepare_run_data` would use (no pixel is decoded)."""
    info, folder = resolve_dataset(data_cfg.dataset, data_cfg.root, data_cfg.num_classes,
                                   data_cfg.synthetic_n, data_cfg.cache_dir)
    split_seed = data_cfg.split_seed if data_cfg.split_seed is not None else seed
    return _run_split(data_cfg, info, scan_folder(folder, volume_options=volume_options(data_cfg)), split_seed,
                      scribbles)


def load_test_sets(data_cfg: DataConfig, seed: int, cache: DecodeCache | None = None,
                   with_unlabelled: bool = False, scribbles: bool = False) -> dict[str, SegData]:
    """Only the test sets of :func:`prepare_run_data` (for re-evaluating a finished run; pass
    ``with_unlabelled`` for a run whose method trained on an unlabelled pool, so the same pool
    images are left out of the OOD sets, and ``scribbles`` as the run was trained). No pool image
    is decoded."""
    info, folder = resolve_dataset(data_cfg.dataset, data_cfg.root, data_cfg.num_classes,
                                   data_cfg.synthetic_n, data_cfg.cache_dir)
    index = scan_folder(folder, allow_unlabelled=with_unlabelled, volume_options=volume_options(data_cfg))
    split_seed = data_cfg.split_seed if data_cfg.split_seed is not None else seed
    split = _run_split(data_cfg, info, index, split_seed, scribbles)
    if split.meta.get("labels") == "scribbles":
        tests = _load_tests(data_cfg, info, index, split, cache or get_cache(data_cfg.cache_dir), set(),
                            held_images(index, split))
        if not split.test:
            tests.pop(info.name, None)
        return tests
    # the same pool rules as prepare_run_data: an unlabelled source's default OOD set is its test
    # part, and no OOD image equals a labelled, validation or pool image of the run
    pool_sets = (unlabelled_datasets(data_cfg, info, index.root) if (with_unlabelled or data_cfg.unlabelled is not None)
                 else set())
    pool = pool_items(data_cfg, info, index, split, split_seed) if with_unlabelled else None
    return _load_tests(data_cfg, info, index, split, cache or get_cache(data_cfg.cache_dir), pool_sets,
                       held_images(index, split, pool))


def show_dataset(name: str, root: str | Path | None = None) -> dict:
    """Registry record + folder summary of one dataset (for ``scarce data show``)."""
    from dataclasses import asdict

    info = get_info(name)
    out: dict = {**asdict(info), "num_classes": info.num_classes}
    if info.name in DATASETS and DATASETS.get(info.name) is info:  # registered (not a folder)
        row = next(r for r in list_datasets(root) if r["name"] == info.name)
        out.update({k: row[k] for k in ("present", "n_images", "masks", "scribbles", "splits", "volumes",
                                        "unsupported", "error") if k in row})
    else:  # unregistered folder
        index = scan_folder(info.folder or name)
        out.update(present=True, n_images=len(index) + len(index.unlabelled), masks=len(index),
                   scribbles=len(index.scribbles))
        if index.groups:
            out["volumes"] = len(set(index.groups.values()))
        if index.unsupported:  # also named in the scan's warning
            out["unsupported"] = [str(p) for p in index.unsupported]
    return out


def list_datasets(root: str | Path | None = None) -> list[dict]:
    """One dict per registered dataset: name, task, metric, ood, present (folder under ``root``), n_images,
    splits (split name → count, or ``{"held_out_test": n}`` without official split), metric,
    description. Folder scanning only; no pixel is decoded. A ``root`` (or $SCARCE_DATA_ROOT)
    that is not a folder raises :class:`DataError`."""
    base = existing_data_root(root)
    out = []
    for name in DATASETS.names():
        info = DATASETS.get(name)
        row = {"name": name, "task": info.task, "metric": info.metric, "present": False,
               "n_images": 0, "splits": {}, "ood": ",".join(info.ood),
               "description": info.description}
        folder = base / info.folder_name if base is not None else None
        if name in SYNTHETIC and not (folder is not None and (folder / "images").is_dir()):
            row.update(present=True, generated=True)  # generated on first use
        elif folder is not None and (folder / "images").is_dir():
            row["present"] = True
            try:
                index = scan_folder(folder)
                row["n_images"] = len(index) + len(index.unlabelled)
                row["masks"], row["scribbles"] = len(index), len(index.scribbles)
                if index.groups:
                    row["volumes"] = len(set(index.groups.values()))
                if index.unsupported:  # also named in the scan's warning
                    row["unsupported"] = len(index.unsupported)
                if index.splits:
                    counts: dict[str, int] = {}
                    for s in index.splits.values():
                        counts[s] = counts.get(s, 0) + 1
                    row["splits"] = dict(sorted(counts.items()))
                if not (info.test_split and index.splits):
                    pool, test = pool_and_test(index.stems, index.splits, info.train_split,
                                               info.test_split, index.groups)
                    row["splits"] = {**row["splits"], "pool": len(pool), "held_out_test": len(test)}
            except DataError as e:
                row["error"] = str(e)
        out.append(row)
    return out


def validate_folder(path_or_name: str | Path, root: str | Path | None = None,
                    num_classes: int | None = None) -> dict:
    """Decode and validate every pair of a folder (for ``scarce data check``); raises the first
    DataError. Returns a summary dict: name, n_images, num_classes, channels, splits."""
    info, folder = resolve_dataset(path_or_name, root, num_classes)
    index = scan_folder(folder)
    k = num_classes or info.num_classes
    get_cache(None).get_many([(index.images[s], index.masks[s]) for s in index.stems], 32,
                             info.channels, k)
    counts: dict[str, int] = {}
    for s in index.splits.values():
        counts[s] = counts.get(s, 0) + 1
    return {"name": info.name, "folder": str(folder), "n_images": len(index), "num_classes": k,
            "channels": info.channels, "splits": counts}
