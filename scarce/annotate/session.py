"""What the annotation page reads and writes, without the web server.

Why separate from the server: every rule that keeps a dataset safe lives here and is tested
without a browser — the page names images by stem only (a stem that is not an image of the
dataset is refused, so no request reaches a path outside it), it writes ``scribbles/<stem>.png``
only (atomically, checked as the documented format), never ``images/`` or ``masks/``, and it never
deletes a file.

The order of the images (``--order``):

* ``name`` — by stem;
* ``worst`` — lowest predicted confidence first (needs ``--run``): the mean over the image's
  pixels of the run's largest class probability, i.e. where the model hesitates most;
* a CSV file with a ``stem`` column (e.g. the ``stem,score,why`` file ``scarce suggest`` writes):
  its images first, in its order (its ``why`` column is shown beside the image), then the others by
  stem.
"""
from __future__ import annotations

import csv
import io
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from scarce.data.folder import SCRIBBLE_DIR, read_image_pil, scan_folder
from scarce.data.load import resolve_dataset
from scarce.data.scribbles import UNLABELLED, image_size, read_scribble, scribble_radii, validate_scribble
from scarce.data.types import DataError
from scarce.errors import ConfigError
from scarce.utils.io import atomic_save_png, atomic_write_text
from scarce.utils.paths import MARKER, check_annotation_folder, read_marker

ANNOTATE = "scarce annotate"
"""Command name in the marker of a scribbles folder this page made or corrected."""
ORDERS = ("name", "worst")
COLOURS = ((0, 170, 255), (255, 225, 0), (60, 220, 60), (255, 60, 60), (180, 90, 255), (255, 140, 0),
           (0, 230, 210), (255, 80, 200), (150, 210, 40), (130, 130, 255))
"""Scribble colour of class id k (background first, cyan: it is drawn too; bright hues that stand
out on red endoscopy and gray scans alike)."""
PREDICTION_COLOURS = ((0, 0, 0), (0, 255, 140), (255, 0, 200), (255, 120, 0), (0, 200, 255), (200, 255, 0),
                      (255, 255, 255), (140, 0, 255), (255, 60, 60), (60, 60, 255))
"""Overlay colour of predicted class k (k = 0 is not drawn): other hues than the scribbles', so a
correction drawn over the prediction stays visible."""
PREDICTION_CACHE = 32
"""Predictions kept in memory (label maps at the image's size); others are computed again."""


@dataclass
class Prediction:
    """A run's prediction for one image: H×W uint8 label ids and the confidence ``worst`` sorts by."""

    labels: np.ndarray
    confidence: float


@dataclass
class AnnotationSession:
    """One dataset opened for annotation (see the module docstring). Build it with :func:`open_session`."""

    name: str
    folder: Path
    scribble_dir: Path
    images: dict[str, Path]
    masked: set[str]
    classes: list[str]
    channels: int
    order: list[str]
    hints: dict[str, str] = field(default_factory=dict)
    segmenter: Any = None
    run: str | None = None
    confidence: dict[str, float] = field(default_factory=dict)
    _cache: "OrderedDict[str, Prediction]" = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---------------------------------------------------------------- reading
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def path(self, stem: str) -> Path:
        """The image file of ``stem``; a stem that is not an image of the dataset is refused
        (KeyError), so a request can never name a path outside it."""
        if stem not in self.images:
            raise KeyError(f"no image {stem!r} in {self.folder / 'images'}")
        return self.images[stem]

    def scribble_path(self, stem: str) -> Path:
        self.path(stem)
        return self.scribble_dir / f"{stem}.png"

    def annotated(self) -> set[str]:
        """Stems with a scribble file (the progress "37 of 400 annotated")."""
        if not self.scribble_dir.is_dir():
            return set()
        return {p.stem for p in self.scribble_dir.iterdir()
                if p.suffix.lower() == ".png" and p.stem in self.images and not p.name.startswith(".")}

    def size(self, stem: str) -> tuple[int, int]:
        """(H, W) of the image as training decodes it (EXIF orientation applied)."""
        return image_size(self.path(stem))

    def item(self, stem: str) -> dict[str, Any]:
        """What the page needs to open one image: size, default brush and click radii (those of
        ``scarce data scribbles``), whether it has a scribble / a mask, its hint and confidence."""
        h, w = self.size(stem)
        stroke, click = scribble_radii((h, w))
        out: dict[str, Any] = {"stem": stem, "width": w, "height": h, "stroke": stroke, "click": click,
                               "annotated": self.scribble_path(stem).is_file(), "masked": stem in self.masked,
                               "hint": self.hints.get(stem, ""), "prediction": self.segmenter is not None}
        if stem in self.confidence:
            out["confidence"] = self.confidence[stem]
        return out

    def state(self) -> dict[str, Any]:
        """The page's start: classes with colours, the ordered images and the progress counts."""
        done = self.annotated()
        return {"dataset": self.name, "classes": self.classes,
                "colours": [list(COLOURS[k % len(COLOURS)]) for k in range(self.num_classes)],
                "prediction_colours": [list(PREDICTION_COLOURS[k % len(PREDICTION_COLOURS)])
                                       for k in range(self.num_classes)],
                "items": [{"stem": s, "annotated": s in done, "masked": s in self.masked} for s in self.order],
                "annotated": len(done), "total": len(self.order), "run": self.run}

    def image_png(self, stem: str) -> bytes:
        """The image as training decodes it (EXIF, 16-bit scaled, alpha dropped), as RGB PNG."""
        img = read_image_pil(self.path(stem), channels=3)
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def scribble_bytes(self, stem: str) -> bytes:
        """The saved scribble as H×W raw bytes (class id, 255 = unlabelled; exact, unlike a PNG a
        browser colour-manages). DataError naming the file when it breaks the format."""
        arr = read_scribble(self.scribble_path(stem), self.num_classes, self.size(stem))
        return np.ascontiguousarray(arr, dtype=np.uint8).tobytes()

    # ---------------------------------------------------------------- writing
    def save(self, stem: str, data: bytes) -> int:
        """Write ``data`` (H×W raw bytes: class id 0..K-1 or 255) as ``scribbles/<stem>.png``,
        atomically, after checking it as training will; returns the number of annotated images.
        An all-255 scribble is refused (an empty file is not valid; nothing is deleted)."""
        h, w = self.size(stem)
        if len(data) != h * w:
            raise DataError(f"scribble for {stem!r} has {len(data)} pixels but its image is {w}×{h} "
                            f"({w * h} pixels); reload the page")
        arr = np.frombuffer(data, dtype=np.uint8).reshape(h, w)
        path = self.scribble_path(stem)
        if not (arr != UNLABELLED).any():
            raise DataError(f"nothing drawn on {stem!r}: an empty scribble is not a valid file, so nothing was saved"
                            + (f" ({path.name} keeps its earlier scribble; delete it by hand to un-annotate the "
                               f"image)" if path.is_file() else ""))
        validate_scribble(arr, path, self.num_classes, (h, w))
        with self._lock:
            self._claim()
            atomic_save_png(path, arr)
        return len(self.annotated())

    def _claim(self) -> None:
        """Before the first write: check the folder again and mark it as holding hand-made
        scribbles (``scarce data scribbles --overwrite`` then refuses to replace them). A folder
        the person made by hand (files, no marker) gets no marker: it is theirs."""
        check_annotation_folder(self.folder, SCRIBBLE_DIR, command=ANNOTATE)
        maker = read_marker(self.scribble_dir)
        has_files = self.scribble_dir.is_dir() and any(p.name != MARKER for p in self.scribble_dir.iterdir())
        if maker == ANNOTATE or (maker is None and has_files):
            return
        import json

        self.scribble_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.scribble_dir / MARKER, json.dumps({"command": ANNOTATE, "format": 1}) + "\n")

    # ---------------------------------------------------------------- predictions
    def prediction(self, stem: str) -> Prediction:
        """The run's prediction for ``stem`` (:meth:`scarce.library.Segmenter.predict_proba`, labelled
        as :meth:`~scarce.library.Segmenter.predict` labels: foreground above the run's threshold,
        else the most likely class), memoised for the last :data:`PREDICTION_CACHE` images."""
        if self.segmenter is None:
            raise ConfigError("no run to predict with: start the page with --run RUN")
        path = self.path(stem)
        with self._lock:
            if stem in self._cache:
                self._cache.move_to_end(stem)
                return self._cache[stem]
            probs = self.segmenter.predict_proba(path)
            if probs.shape[0] == 2:
                labels = (probs[1] > self.segmenter.threshold).astype(np.uint8)
            else:
                labels = probs.argmax(axis=0).astype(np.uint8)
            pred = Prediction(labels, float(probs.max(axis=0).mean()))
            self.confidence[stem] = pred.confidence
            self._cache[stem] = pred
            while len(self._cache) > PREDICTION_CACHE:
                self._cache.popitem(last=False)
            return pred


def _log_stderr(msg: str) -> None:
    print(f"scarce: {msg}", file=sys.stderr, flush=True)


def read_order_csv(path: str | os.PathLike[str], stems: set[str]) -> tuple[list[str], dict[str, str]]:
    """(stems in the file's order, stem → its ``why`` text) of an order CSV with a ``stem`` column
    (other columns, e.g. ``score``, are ignored). One DataError naming the file and line for a
    missing column or a stem that is not an image of the dataset."""
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read the order file {p}: {e}; give a CSV file with a 'stem' column") from None
    if "stem" not in header:
        raise DataError(f"order file {p} has columns {','.join(header) or '(none)'}; it needs a 'stem' column "
                        f"(e.g. the stem,score,why file `scarce suggest` writes)")
    i_stem = header.index("stem")
    i_why = header.index("why") if "why" in header else None
    order: list[str] = []
    hints: dict[str, str] = {}
    for n, row in enumerate(rows, start=2):
        if not any(c.strip() for c in row):
            continue
        stem = row[i_stem].strip() if len(row) > i_stem else ""
        if stem not in stems:
            raise DataError(f"order file {p} line {n} names {stem!r}, which is not an image of the dataset; fix or "
                            f"delete that row")
        if stem not in hints:
            order.append(stem)
            hints[stem] = row[i_why].strip() if i_why is not None and len(row) > i_why else ""
    return order, hints


def open_session(dataset: str, data_root: str | None = None, run: str | None = None, order: str | None = None,
                 log: Callable[[str], None] = _log_stderr) -> AnnotationSession:
    """Open ``dataset`` (a registered name under the data root, or a folder with ``images/``)
    for annotation; everything is checked before the page starts: the scribbles folder
    (:func:`scarce.utils.paths.check_annotation_folder`), the run (``--run``: loaded with
    :func:`scarce.library.load`, its classes must match) and the order (``--order``; default
    ``worst`` with a run, else ``name``)."""
    order = order or ("worst" if run else "name")
    if order not in ORDERS and not order.lower().endswith(".csv"):
        raise ConfigError(f"--order {order!r}: use worst, name or a CSV file with a stem column (FILE.csv)")
    if order == "worst" and not run:
        raise ConfigError("--order worst sorts by the model's confidence: give the run with --run RUN")
    info, folder = resolve_dataset(dataset, data_root)
    folder = Path(folder).expanduser().resolve()
    scribble_dir = check_annotation_folder(folder, SCRIBBLE_DIR, command=ANNOTATE)
    index = scan_folder(folder, allow_unlabelled=True)
    slices = set(getattr(index, "groups", {}))  # slices of NIfTI/DICOM volumes: not drawn on here
    images = {s: p for s, p in sorted({**index.images, **index.unlabelled}.items()) if s not in slices}
    if not images:
        raise DataError(f"{folder / 'images'} holds no 2D images to annotate (volumes are not shown by the page: "
                        f"export their slices as PNG to annotate them)")
    session = AnnotationSession(name=info.name, folder=folder, scribble_dir=scribble_dir, images=images,
                                masked=set(index.stems), classes=list(info.classes), channels=info.channels,
                                order=sorted(images))
    if order not in ORDERS:
        first, session.hints = read_order_csv(order, set(images))
        session.order = first + [s for s in sorted(images) if s not in set(first)]
    if run:
        from scarce.library import load

        session.segmenter, session.run = load(run), str(run)
        if session.segmenter.num_classes != session.num_classes:
            raise ConfigError(f"run {run} predicts {session.segmenter.num_classes} classes but {info.name!r} has "
                              f"{session.num_classes}; annotate with a run trained on this kind of data")
        if order == "worst":
            for i, stem in enumerate(session.order):
                session.prediction(stem)
                if (i + 1) % 50 == 0 or i + 1 == len(session.order):
                    log(f"predicted {i + 1} of {len(session.order)} images with {run}")
            session.order = sorted(session.order, key=lambda s: (session.confidence[s], s))
    return session


__all__ = ["ANNOTATE", "AnnotationSession", "COLOURS", "PREDICTION_COLOURS", "Prediction", "open_session",
           "read_order_csv"]
