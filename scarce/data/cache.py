"""Decode + resize each pair once: an in-memory LRU and an optional on-disk ``.npz`` cache.

Why: runs of one experiment grid (methods × budgets × seeds) load the same images many times;
decoding JPEGs dominates start-up on 2 cores. The memory cache is keyed by (path, mtime, file
size, target size, ...), so an edited file is decoded again; the disk cache (``cache_dir``) by
the SHA-1 of the file bytes, so it survives moves and is shared between processes. Disk entries
are written atomically (a crash never leaves a half-written entry).

Resizing: images PIL bilinear (antialiased when shrinking) to S×S, masks nearest to S×S, or with
``data.aspect=pad`` the longer side to S and the rest padded (:func:`content_size`); then the
image's intensity preprocessing (``data.intensity``, :mod:`scarce.data.intensity`). Both are
part of both cache keys so arrays prepared differently never mix (``none`` / ``squash`` keep the
keys of earlier versions, so existing disk caches stay valid).

Volume slices (``<volume>#z<k>@<axis>`` paths, :mod:`scarce.data.volumes`) are keyed by their
volume's state (memory) or content digest plus axis, index and intensity mapping (disk); the
volume itself is decoded once by :mod:`scarce.data.volumes`, not once per slice.
"""
from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from scarce.data.folder import read_image_pil, read_pair
from scarce.data.identity import file_digest
from scarce.data.intensity import check_intensity, preprocess_intensity
from scarce.data.types import content_size
from scarce.data.volumes import slice_ref, volume_stamp
from scarce.utils.io import atomic_path

CACHE_VERSION = 1
MAX_THREADS = 2


@dataclass
class Decoded:
    image: np.ndarray
    """C×S×S uint8."""
    mask: np.ndarray | None
    """S×S uint8 label ids (None for an image decoded without its mask: an unlabelled image)."""
    orig: np.ndarray | None
    """H×W uint8 label ids at the mask's original resolution (None unless requested)."""

    @property
    def nbytes(self) -> int:
        return (self.image.nbytes + (0 if self.mask is None else self.mask.nbytes)
                + (0 if self.orig is None else self.orig.nbytes))


ASPECTS = ("squash", "pad")
"""``data.aspect`` values: how an H×W image becomes the S×S working image."""


def check_aspect(aspect: str) -> str:
    """``aspect`` if it is one of :data:`ASPECTS`, else ValueError naming the choices."""
    if aspect not in ASPECTS:
        raise ValueError(f"data.aspect must be one of {', '.join(ASPECTS)}, got {aspect!r}")
    return aspect


def pad_to(arr: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad a ``[C×]h×w`` array at the bottom and right to ``[C×]size×size`` (the padding of
    :func:`content_size`'s ``pad``: black image, background label 0)."""
    h, w = arr.shape[-2:]
    if (h, w) == (size, size):
        return arr
    out = np.zeros((*arr.shape[:-2], size, size), dtype=arr.dtype)
    out[..., :h, :w] = arr
    return out


def resize_image(img: Image.Image, size: int, aspect: str = "squash") -> np.ndarray:
    """PIL image → C×h×w uint8 content (bilinear, antialiased; h×w = :func:`content_size`, S×S
    when squashed): the one resize used for training, evaluation and ``scarce predict`` alike."""
    h, w = content_size(img.height, img.width, size, aspect)
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def prepare_image(img: Image.Image, size: int, intensity: str = "none", aspect: str = "squash") -> np.ndarray:
    """PIL image → C×S×S uint8: :func:`resize_image`, then ``data.intensity`` preprocessing (of
    the content only), then the ``pad`` padding.

    The one image path of training, evaluation and ``scarce predict`` (see
    :func:`scarce.data.load.load_image`).
    """
    arr = preprocess_intensity(resize_image(img, size, aspect), intensity)
    return np.ascontiguousarray(pad_to(arr, size) if aspect == "pad" else arr)


def resize_mask(labels: np.ndarray, size: int, aspect: str = "squash") -> np.ndarray:
    """H×W label ids → S×S (nearest; ``pad``: the content as :func:`content_size`, background
    padding)."""
    h, w = content_size(labels.shape[0], labels.shape[1], size, aspect)
    small = labels if labels.shape == (h, w) else np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
    return pad_to(small, size) if aspect == "pad" else small


def decode_resize(image_path: Path, mask_path: Path | None, size: int, channels: int,
                  num_classes: int, intensity: str = "none", aspect: str = "squash") -> Decoded:
    """Decode, validate and resize one pair (no caching). Raises DataError on bad input.
    ``mask_path=None``: the image alone (an unlabelled image: no mask file is opened)."""
    if mask_path is None:
        arr = prepare_image(read_image_pil(image_path, channels), size, intensity, aspect)
        return Decoded(np.ascontiguousarray(arr), None, None)
    img, labels = read_pair(image_path, mask_path, num_classes, channels)
    arr = prepare_image(img, size, intensity, aspect)
    return Decoded(np.ascontiguousarray(arr), np.ascontiguousarray(resize_mask(labels, size, aspect)), labels)


def _stamp(path: Path) -> tuple[int, int]:
    """(mtime, size) of a file; of a volume slice: of its volume (:mod:`scarce.data.volumes`)."""
    ref = slice_ref(path) if "#z" in str(path) else None
    if ref is not None:
        return volume_stamp(ref.volume)
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _content(path: Path) -> bytes:
    """What the disk cache key hashes: a file's bytes; for a volume slice its content digest
    (volume bytes, axis, index) plus the intensity mapping recorded in its path."""
    ref = slice_ref(path) if "#z" in str(path) else None
    if ref is None:
        return path.read_bytes()
    return f"{file_digest(path)}|w={ref.window}|n={ref.normalise}|o={ref.orient}".encode()


class DecodeCache:
    """Thread-safe LRU of decoded pairs (bounded by bytes) plus an optional disk cache."""

    def __init__(self, cache_dir: str | Path | None = None, max_bytes: int = 1 << 30) -> None:
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.max_bytes = max_bytes
        self._mem: OrderedDict[tuple, Decoded] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.stats = {"decoded": 0, "memory_hits": 0, "disk_hits": 0}

    # ---------------------------------------------------------------- memory
    @staticmethod
    def _mem_key(image_path: Path, mask_path: Path | None, size: int, channels: int,
                 num_classes: int, intensity: str = "none", aspect: str = "squash") -> tuple:
        si = _stamp(image_path)
        if mask_path is None:  # image only
            return (str(image_path.resolve()), *si, None, size, channels, intensity, aspect)
        sm = _stamp(mask_path)
        return (str(image_path.resolve()), *si, str(mask_path.resolve()), *sm, size, channels, num_classes,
                intensity, aspect)

    def _mem_get(self, key: tuple, keep_orig: bool) -> Decoded | None:
        with self._lock:
            entry = self._mem.get(key)
            if entry is None or (keep_orig and entry.orig is None):
                return None
            self._mem.move_to_end(key)
            self.stats["memory_hits"] += 1
            return entry

    def _mem_put(self, key: tuple, entry: Decoded) -> None:
        with self._lock:
            old = self._mem.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._mem[key] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.max_bytes and len(self._mem) > 1:
                _, ev = self._mem.popitem(last=False)
                self._bytes -= ev.nbytes

    def clear(self) -> None:
        with self._lock:
            self._mem.clear()
            self._bytes = 0

    # ---------------------------------------------------------------- disk
    def _disk_path(self, image_path: Path, mask_path: Path | None, size: int, channels: int,
                   num_classes: int, intensity: str = "none", aspect: str = "squash") -> Path:
        h = hashlib.sha1()
        h.update(_content(image_path))
        h.update(b"\0")
        if mask_path is None:
            h.update(f"|image-only|{size}|{channels}|v{CACHE_VERSION}".encode())
        else:
            h.update(_content(mask_path))
            h.update(f"|{size}|{channels}|{num_classes}|v{CACHE_VERSION}".encode())
        if intensity != "none":  # ``none`` keeps the key of caches written before the option
            h.update(f"|intensity={intensity}".encode())
        if aspect != "squash":  # likewise
            h.update(f"|aspect={aspect}".encode())
        digest = h.hexdigest()
        assert self.cache_dir is not None
        return self.cache_dir / "decoded" / digest[:2] / f"{digest}.npz"

    @staticmethod
    def _disk_read(path: Path) -> Decoded | None:
        try:
            with np.load(path) as z:
                if "mask" not in z:  # an image-only entry
                    return Decoded(z["image"], None, None)
                return Decoded(z["image"], z["mask"], z["orig"])
        except Exception:  # missing or damaged entry → decode again
            return None

    @staticmethod
    def _disk_write(path: Path, entry: Decoded) -> None:
        buf = io.BytesIO()
        if entry.mask is None:
            np.savez_compressed(buf, image=entry.image)
        else:
            np.savez_compressed(buf, image=entry.image, mask=entry.mask, orig=entry.orig)
        try:
            with atomic_path(path) as tmp:
                tmp.write_bytes(buf.getvalue())
        except OSError:
            pass  # a read-only / full cache must not fail the run

    # ---------------------------------------------------------------- public
    def get(self, image_path: str | Path, mask_path: str | Path | None, size: int, channels: int,
            num_classes: int, keep_orig: bool = False, intensity: str = "none", aspect: str = "squash") -> Decoded:
        """One resized pair; ``orig`` is filled when ``keep_orig`` (else may be None);
        ``intensity`` = ``data.intensity`` preprocessing of the image, ``aspect`` = ``data.aspect``.
        ``mask_path=None`` decodes the image alone (its own cache entries; no mask file is opened)."""
        image_path = Path(image_path)
        mask_path = None if mask_path is None else Path(mask_path)
        keep_orig = keep_orig and mask_path is not None
        intensity = check_intensity(intensity)
        aspect = check_aspect(aspect)
        key = self._mem_key(image_path, mask_path, size, channels, num_classes, intensity, aspect)
        hit = self._mem_get(key, keep_orig)
        if hit is not None:
            return hit
        disk = None
        if self.cache_dir is not None:
            disk = self._disk_path(image_path, mask_path, size, channels, num_classes, intensity, aspect)
            entry = self._disk_read(disk) if disk.is_file() else None
            if entry is not None:
                with self._lock:
                    self.stats["disk_hits"] += 1
                if not keep_orig:
                    entry = Decoded(entry.image, entry.mask, None)
                self._mem_put(key, entry)
                return entry
        entry = decode_resize(image_path, mask_path, size, channels, num_classes, intensity, aspect)
        with self._lock:
            self.stats["decoded"] += 1
        if disk is not None:
            self._disk_write(disk, entry)
        if not keep_orig:
            entry = Decoded(entry.image, entry.mask, None)
        self._mem_put(key, entry)
        return entry

    def get_many(self, pairs: Sequence[tuple[Path, Path | None]], size: int, channels: int,
                 num_classes: int, keep_orig: bool = False, threads: int = MAX_THREADS,
                 intensity: str = "none", aspect: str = "squash") -> list[Decoded]:
        """Decode many pairs with at most ``threads`` (≤ 2) threads; order is kept. The first
        bad pair raises its DataError (remaining work is cancelled)."""
        threads = max(1, min(int(threads), MAX_THREADS))
        intensity = check_intensity(intensity)
        if threads == 1 or len(pairs) < 8:
            return [self.get(i, m, size, channels, num_classes, keep_orig, intensity, aspect)
                    for i, m in pairs]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(self.get, i, m, size, channels, num_classes, keep_orig,
                                   intensity, aspect)
                       for i, m in pairs]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise


_CACHES: dict[str | None, DecodeCache] = {}
_CACHES_LOCK = threading.Lock()


def get_cache(cache_dir: str | Path | None = None) -> DecodeCache:
    """The process-wide cache for ``cache_dir`` (None = memory only)."""
    key = str(Path(cache_dir).expanduser().resolve()) if cache_dir else None
    with _CACHES_LOCK:
        if key not in _CACHES:
            _CACHES[key] = DecodeCache(key)
        return _CACHES[key]
