"""``scarce export-model``: a finished run's segmenter as an ONNX or TorchScript file that runs
without scarce, with its preprocessing written into the file and the export checked.

Why: a model that only scarce can run cannot go into a hospital's viewer, a MONAI/Triton
deployment or a C++ tool. What the file alone does not tell — how an image becomes the network's
input (size, channels, ``data.aspect``, ``data.intensity``, whether the network normalises its
input itself) and how its output becomes a mask (threshold, cutting off the padding, scaling back)
— is written into it: ONNX ``metadata_props`` (one entry per key, JSON-encoded values) or the
TorchScript extra file ``scarce.json``, and beside it as ``<file>.json``.

The exported network is the run's best checkpoint followed by the class probabilities (sigmoid →
``[1 − p, p]`` for binary tasks, softmax otherwise) and the run's ``eval.tta`` / ``eval.window``:
input ``image`` N×C×S×S float32 in [0, 1] (already preprocessed), output ``probabilities``
N×K×S×S — exactly what :func:`scarce.evaluation.evaluate.predict_probs` returns.

**Checked, every time.** Before the file is written, the exported model (through onnxruntime, or
``torch.jit.load``) is run on the run's own test images and its probabilities compared with
scarce's; the largest absolute difference is printed, stored in the metadata
(``check_max_abs_diff``) and must stay under ``tolerance`` (default 1e-4), else nothing is written.

Where it goes (the output policy of :mod:`scarce.utils.paths`): by default ``RUN/export/`` (a
folder this command makes inside the run, as ``eval/``), as ``model.onnx`` or
``model.torchscript.pt`` plus ``<file>.json``; an existing file there is replaced only with
``--overwrite``. ``-o FILE`` writes elsewhere (never into a dataset or another command's folder;
an existing file only with ``--overwrite`` and only when this command wrote it).

ONNX needs the optional packages ``onnx`` and ``onnxruntime`` (``pip install "scarce[onnx]"``);
TorchScript needs nothing beyond torch. ``torch.jit.trace`` is used for both (``torch.jit.script``
does not compile the networks' annotations).
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from scarce.config import ConfigError, RunConfig
from scarce.utils.runfolder import BEST_CKPT, CKPT_DIR, RunPaths

EXPORT_MODEL = "scarce export-model"
"""Command name in the output marker of ``RUN/export`` and in the ``<file>.json`` records."""
FORMATS = ("onnx", "torchscript")
DEFAULT_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
EXPORT_DIR = "export"
"""``RUN/export``: the default folder of the exports."""
TORCHSCRIPT_EXTRA = "scarce.json"
"""Name of the metadata file inside a TorchScript export (``torch.jit.load(..., _extra_files=)``)."""
ONNX_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
"""Largest accepted absolute difference between the export's probabilities and scarce's."""


def _need_onnx() -> None:
    missing = []
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(f"--format onnx needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''}: "
                          f"pip install \"scarce[onnx]\" (or --format torchscript, which needs nothing more)")


def record_path(model_file: str | os.PathLike[str]) -> Path:
    """The JSON record written beside an export: ``<file>.json``."""
    p = Path(model_file)
    return p.with_name(p.name + ".json")


def is_export_record(path: Path) -> bool:
    """True when ``path`` (a model file or its ``.json``) belongs to an export this command wrote
    (its record names the command)."""
    rec = path if path.name.endswith(".json") else record_path(path)
    try:
        data = json.loads(rec.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("command") == EXPORT_MODEL


def _is_export_folder(folder: Path) -> bool:
    """An export folder made before markers existed: only export files and their records."""
    entries = [e for e in folder.iterdir() if e.name != ".scarce"]
    return bool(entries) and all(e.is_file() and is_export_record(e) for e in entries)


def resolve_output(run_dir: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str] | None,
                   overwrite: bool) -> tuple[Path, bool]:
    """The export's path and whether it goes into ``RUN/export`` (the command's own folder),
    checked against the output policy before any work (ConfigError, one line)."""
    from scarce.utils.paths import check_output_file, check_output_folder, resolved

    run = Path(run_dir)
    folder = run / EXPORT_DIR
    target = Path(out) if out else folder / DEFAULT_NAMES[fmt]
    if resolved(target).parent == resolved(folder):
        check_output_folder(folder, containers=[run], overwrite=overwrite, what="export folder",
                            previous=_is_export_folder, command=EXPORT_MODEL)
        for p in (target, record_path(target)):
            if p.is_dir():
                raise ConfigError(f"export file {str(p)!r} is a folder; give a file path")
            if p.exists() and not overwrite:
                raise ConfigError(f"export file {str(p)!r} already exists; pass --overwrite to replace it, or "
                                  f"choose another path with -o FILE")
        return target, True
    best = RunPaths(run).best_checkpoint
    for p in (target, record_path(target)):
        check_output_file(p, overwrite=overwrite, what="export file", inputs=[best], command=EXPORT_MODEL,
                          previous=is_export_record)
    return target, False


def probability_net(model: Any, tta: str = "none", window: int = 0) -> Any:
    """An ``nn.Module`` (eval mode) whose forward maps images N×C×S×S in [0, 1] to class
    probabilities N×K×S×S exactly as :func:`~scarce.evaluation.evaluate.predict_probs` does (flip
    TTA, sliding window), in a form ``torch.jit.trace`` can record. Defined here, not at module
    level, so importing this module needs no torch."""
    import torch
    from torch import nn

    from scarce.evaluation.evaluate import _TTA_FLIPS, check_tta
    from scarce.losses import class_probs

    flips = _TTA_FLIPS[check_tta(tta)]

    class _Probabilities(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def _logits(self, x: torch.Tensor) -> torch.Tensor:
            if window and (x.shape[-1] > window or x.shape[-2] > window):
                from monai.inferers import sliding_window_inference

                return sliding_window_inference(x, (window, window), 1, self.net, overlap=0.5, mode="gaussian")
            return self.net(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p = class_probs(self._logits(x).float())
            for dims in flips[1:]:
                p = p + class_probs(self._logits(x.flip(dims)).float()).flip(dims)
            return p / len(flips) if len(flips) > 1 else p

    return _Probabilities().eval()


def _sha1(path: Path) -> str:
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


INTENSITY_TEXT = {
    "none": "none: the resized 8-bit image as it is",
    "percentile": "percentile: clip to the image's [0.5, 99.5] percentiles (one pair over all channels) and "
                  "rescale that range to 0..255 (scarce.data.intensity.percentile_rescale)",
    "clahe": "clahe: scikit-image exposure.equalize_adapthist (clip limit 0.01, tiles of 1/8 of the image, 256 "
             "bins; RGB on the V channel of HSV), back to 0..255 (scarce.data.intensity.clahe)",
    "percentile_clahe": "percentile_clahe: percentile, then clahe (scarce.data.intensity)",
}


def export_metadata(cfg: RunConfig, run_dir: Path, channels: int, num_classes: int, fmt: str) -> dict[str, Any]:
    """Everything a user of the exported file needs besides the graph (see the module docstring)."""
    from scarce import __version__
    from scarce.data.registry import get_info
    from scarce.models.input_norm import resolve_input_norm

    d, e, m = cfg.data, cfg.eval, cfg.model
    try:
        classes = list(get_info(d.dataset, num_classes=d.num_classes).classes)
    except (KeyError, ValueError, ConfigError):
        classes = []
    if len(classes) != num_classes:
        classes = ["background"] + [f"c{c}" for c in range(1, num_classes)]
    norm = resolve_input_norm(m.input_norm, m.encoder, m.encoder_weights)
    s = int(d.size)
    return {
        "format": fmt,
        "scarce_version": __version__,
        "run": Path(run_dir).resolve().name,
        "checkpoint": f"{CKPT_DIR}/{BEST_CKPT}",
        "checkpoint_sha1": _sha1(RunPaths(run_dir).best_checkpoint),
        "network": m.name + (f" ({m.encoder})" if m.encoder else ""),
        "input_name": "image",
        "input_shape": ["N", channels, s, s],
        "input_dtype": "float32",
        "input_range": [0.0, 1.0],
        "input_size": s,
        "channels": channels,
        "channel_order": "gray" if channels == 1 else "RGB",
        "aspect": d.aspect,
        "intensity": d.intensity,
        "normalisation_in_model": norm != "none",
        "input_norm": norm,
        "preprocess": (
            f"1. decode to 8-bit {'gray' if channels == 1 else 'RGB'} (16-bit images min-max scaled to 0..255, "
            f"alpha dropped); 2. resize with PIL bilinear (antialiased when shrinking) "
            + ("to S x S (aspect=squash: the aspect ratio is not kept)" if d.aspect != "pad" else
               "so the longer side is S, keeping the aspect ratio: h = max(1, min(S, round(H * S / max(H, W)))), "
               "w likewise (Python round, half to even), then zero-pad at the bottom and right to S x S "
               "(aspect=pad)")
            + f"; 3. intensity {INTENSITY_TEXT.get(d.intensity, d.intensity)} (of the content, before padding); "
            f"4. float32 = uint8 / 255, layout N x C x S x S; "
            + (f"5. normalisation '{norm}' happens inside the model: do not normalise yourself"
               if norm != "none" else "5. no further normalisation (none inside the model either)")
        ),
        "output_name": "probabilities",
        "output_shape": ["N", num_classes, s, s],
        "output": "class probabilities (binary: [1 - p, p] from the sigmoid; else softmax)"
                  + (", mean over the image and its horizontal and vertical flips (eval.tta=flip)"
                     if e.tta == "flip" else "")
                  + (f", sliding windows of {e.window} px (eval.window)" if e.window else ""),
        "classes": classes,
        "num_classes": num_classes,
        "threshold": float(e.threshold),
        "labels": ("foreground where probabilities[:, 1] > threshold" if num_classes == 2
                   else "argmax over the K classes"),
        "undo_padding": ("aspect=pad: keep probabilities[..., :h, :w] with h, w as in preprocess step 2, then "
                         "resize to the original H x W" if d.aspect == "pad" else
                         "aspect=squash: no padding; resize the S x S probabilities to the original H x W"),
        "postprocess": "cut off the padding (undo_padding), resize the probabilities bilinearly to the image's "
                       "original H x W (torch.nn.functional.interpolate, align_corners=False), then threshold "
                       "(binary) or argmax (multi-class) there, as scarce predict does",
        "tta": e.tta,
        "window": int(e.window),
    }


def _flat_props(meta: dict[str, Any]) -> dict[str, str]:
    """ONNX metadata_props: one entry per key, every value JSON-encoded (a string too, so a reader
    decodes all of them with ``json.loads``)."""
    return {k: json.dumps(v) for k, v in meta.items()}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch's deprecation notes on ``torch.jit.save``/``load`` and the ONNX exporter (the
    formats this command is asked to write) and tracer warnings: the check is the real test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _trace(module: Any, example: Any) -> Any:
    import torch

    with _quiet(), torch.no_grad():
        return torch.jit.trace(module, example, check_trace=False)


def _export_onnx(module: Any, example: Any, path: Path, dynamic_batch: bool, out_shape: tuple[int, ...]) -> None:
    """Trace ``module`` into an ONNX file at ``path`` and declare the output's K × S × S (the
    exporter names them symbolically after a concatenation); checked by ``onnx.checker``."""
    import onnx
    import torch

    with _quiet(), torch.no_grad():
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["image"], output_names=["probabilities"],
                          dynamic_axes={"image": {0: "N"}, "probabilities": {0: "N"}} if dynamic_batch else None)
    proto = onnx.load(str(path))
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    for d, n in zip(list(dims)[1:], out_shape[1:]):
        d.ClearField("dim_param")
        d.dim_value = int(n)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _runner(fmt: str, path: Path, batch: int | None) -> Callable[[Any], Any]:
    """A function images (N×C×S×S tensor) → probabilities (numpy) that runs the *file* at ``path``
    (onnxruntime / torch.jit.load), in batches of ``batch`` (None: all at once)."""
    import numpy as np
    import torch

    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def run_one(x: Any) -> Any:
            return sess.run(["probabilities"], {"image": x.numpy().astype(np.float32)})[0]
    else:
        with _quiet():
            loaded = torch.jit.load(str(path), map_location="cpu")

        def run_one(x: Any) -> Any:
            with torch.no_grad():
                return loaded(x).numpy()

    def run(images: Any) -> Any:
        step = batch or max(1, int(images.shape[0]))
        return np.concatenate([run_one(images[i:i + step]) for i in range(0, int(images.shape[0]), step)])

    return run


def _write_export(fmt: str, source: Path, dest: Path, meta: dict[str, Any]) -> None:
    """Copy the checked export ``source`` to ``dest`` (atomically) with ``meta`` in its metadata;
    only metadata changes, the graph is the one checked."""
    from scarce.utils.io import atomic_path

    if fmt == "onnx":
        import onnx

        proto = onnx.load(str(source))
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, _flat_props(meta))
        proto.producer_name, proto.doc_string = "scarce", (
            f"scarce segmenter of run {meta['run']}: input 'image' N x {meta['channels']} x {meta['input_size']} x "
            f"{meta['input_size']} float32 in [0, 1]; output 'probabilities'. Preprocessing and postprocessing: "
            f"metadata_props (preprocess, undo_padding, postprocess).")
        with atomic_path(dest) as tmp:
            onnx.save(proto, str(tmp))
    else:
        import torch

        with _quiet(), atomic_path(dest) as tmp:
            module = torch.jit.load(str(source), map_location="cpu")
            torch.jit.save(module, str(tmp), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(meta, indent=2)})


def read_export_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of an export written by this module (ONNX metadata_props with JSON values
    decoded, or the TorchScript extra file)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        out: dict[str, Any] = {}
        for p in proto.metadata_props:
            out[p.key] = json.loads(p.value)
        return out
    import torch

    extra = {TORCHSCRIPT_EXTRA: ""}
    with _quiet():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[TORCHSCRIPT_EXTRA])


def export_model(run_dir: str | os.PathLike[str], fmt: str = "onnx", out: str | os.PathLike[str] | None = None,
                 overwrite: bool = False, sets: list[str] | None = None, data_root: str | None = None,
                 check_images: int = 64, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Export the run's best checkpoint as ``fmt`` (``onnx`` | ``torchscript``) to ``out`` (default
    ``RUN/export/model.onnx`` / ``model.torchscript.pt``), checked on up to ``check_images`` of the
    run's test images (ID set first, then the OOD sets). ``sets`` override keys of the run's config
    (``train.threads=1``; ``data.root=...`` or ``data_root`` where the data lies elsewhere).

    Returns ``{path, record, format, images, test_sets, max_abs_diff, labels_differing, pixels}``;
    raises ConfigError (nothing written) when a package is missing, the path is refused, or the
    export's probabilities differ from scarce's by more than ``tolerance``."""
    import tempfile

    import numpy as np
    import torch

    from scarce.api import check_test_sets, load_run_config, load_segmenter, uses_pool
    from scarce.data.load import load_test_sets
    from scarce.evaluation.evaluate import _labels_from_probs, predict_probs
    from scarce.utils.paths import claimed_output

    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be onnx or torchscript, got {fmt!r}")
    if not (isinstance(check_images, int) and check_images >= 1):
        raise ConfigError(f"--check-images must be an integer >= 1 (test images the export is checked on), "
                          f"got {check_images!r}")
    if fmt == "onnx":
        _need_onnx()
    cfg = load_run_config(run_dir, sets=sets)
    if data_root:
        cfg.data.root = data_root
    if not RunPaths(run_dir).best_checkpoint.is_file():
        raise ConfigError(f"no best checkpoint in {str(run_dir)!r}: the run has not validated yet (train it first)")
    dest, own_folder = resolve_output(run_dir, fmt, out, overwrite)
    check_test_sets(cfg, run_dir, "the export is checked on the run's test images: add --set "
                                  f"data.test_sets=[{cfg.data.dataset}]")
    if cfg.train.threads > 0:
        torch.set_num_threads(int(cfg.train.threads))

    tests = load_test_sets(cfg.data, seed=cfg.train.seed, with_unlabelled=uses_pool(cfg))
    first = next(iter(tests.values()))
    channels, num_classes = int(first.images.shape[1]), int(first.num_classes)
    images, used = [], []
    for name, data in tests.items():
        take = min(len(data), check_images - sum(int(x.shape[0]) for x in images))
        if take > 0:
            images.append(data.images[:take])
            used.append(name)
    x = torch.cat(images).float()
    if int(x.shape[0]) == 0:
        raise ConfigError(f"run {Path(run_dir).as_posix()!r}: its test sets hold no image to check the export on")

    model = load_segmenter(run_dir, cfg, in_channels=channels, num_classes=num_classes)
    reference = predict_probs(model, x, batch_size=8, tta=cfg.eval.tta).numpy()
    module = probability_net(model, cfg.eval.tta, int(cfg.eval.window))
    example = x[:1].clone()
    meta = export_metadata(cfg, Path(run_dir), channels, num_classes, fmt)
    # sliding windows are traced for one image at a time (MONAI batches windows, not images)
    dynamic = not (cfg.eval.window and cfg.eval.window < int(cfg.data.size))
    meta["dynamic_batch"] = dynamic

    with tempfile.TemporaryDirectory(prefix=".scarce-export-") as tmp:
        raw = Path(tmp) / ("raw.onnx" if fmt == "onnx" else "raw.pt")
        try:
            if fmt == "onnx":
                _export_onnx(module, example, raw, dynamic, (1, num_classes, int(x.shape[-2]), int(x.shape[-1])))
            else:
                traced = _trace(module, example)
                with _quiet():
                    torch.jit.save(traced, str(raw))
        except Exception as e:  # an operator the exporter lacks: say which run and format
            raise ConfigError(f"cannot export run {Path(run_dir).as_posix()!r} as {fmt}: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from e
        got = _runner(fmt, raw, 8 if dynamic else 1)(x)  # the file, as a user's runtime loads it
        diff = float(np.abs(got - reference).max())
        lab_ref = torch.stack([_labels_from_probs(torch.from_numpy(p), cfg.eval.threshold) for p in reference])
        lab_got = torch.stack([_labels_from_probs(torch.from_numpy(p), cfg.eval.threshold) for p in got])
        differing = int((lab_ref != lab_got).sum())
        if not diff <= tolerance:
            raise ConfigError(f"the {fmt} export of {Path(run_dir).as_posix()!r} differs from scarce's own "
                              f"probabilities by up to {diff:.3g} on {int(x.shape[0])} test images (tolerance "
                              f"{tolerance:g}); nothing was written")
        meta.update({
            "check_images": int(x.shape[0]),
            "check_test_sets": used,
            "check_runtime": "onnxruntime " + __import__("onnxruntime").__version__ if fmt == "onnx"
            else f"torch.jit.load (torch {torch.__version__})",
            "check_max_abs_diff": diff,
            "check_labels_differing": differing,
            "check_pixels": int(lab_ref.numel()),
        })

        with claimed_output(dest.parent, EXPORT_MODEL) if own_folder else contextlib.nullcontext():
            _write_export(fmt, raw, dest, meta)
            from scarce.utils.io import atomic_write_json

            atomic_write_json(record_path(dest), {"command": EXPORT_MODEL, "file": dest.name, **meta})
    return {"path": str(dest), "record": str(record_path(dest)), "format": fmt, "images": int(x.shape[0]),
            "test_sets": used, "max_abs_diff": diff, "labels_differing": differing,
            "pixels": int(lab_ref.numel())}


__all__ = ["DEFAULT_NAMES", "EXPORT_MODEL", "FORMATS", "export_metadata", "export_model", "probability_net",
           "is_export_record", "read_export_metadata", "record_path", "resolve_output"]
