"""Models that leave scarce: ``scarce export-model`` (ONNX / TorchScript, preprocessing in the
metadata, checked against scarce's own probabilities) and the library surface ``scarce.train`` /
``scarce.load`` / ``Segmenter.predict`` (the same masks as ``scarce predict``)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import scarce
from scarce.config import ConfigError

TINY = {"train": {"iterations": 6, "val_every": 3, "batch_size": 4, "threads": 1, "progress": False,
                  "tensorboard": False},
        "model": {"width": 4, "depth": 2}, "eval": {"overlays": 0, "save_predictions": False}}


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny run on non-square (40 × 64) images with data.aspect=pad, data.intensity=percentile
    and eval.tta=flip: every step between an image and its mask is exercised. Returns (run, data)."""
    from scarce.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("export")
    data = make_synthetic(root / "wide", 30, size=64, seed=0)
    for sub in ("images", "masks"):
        for p in (data / sub).glob("*.png"):
            Image.open(p).crop((0, 8, 64, 48)).save(p)  # (left, top, right, bottom): 40 rows × 64 columns
    res = scarce.train(data, "supervised", root / "run", preset="cpu",
                       data={"size": 32, "aspect": "pad", "intensity": "percentile", "budget": 10},
                       eval__tta="flip", **TINY)
    return Path(res["run_dir"]), data


def _test_images(data: Path) -> list[Path]:
    return sorted(p for p in (data / "images").glob("*.png") if int(p.stem[-4:]) % 5 == 4)


# --------------------------------------------------------------------------- the library surface

def test_import_scarce_stays_lazy():
    code = ("import sys, scarce; f = scarce.load, scarce.train; "
            "assert 'torch' not in sys.modules, 'import scarce loaded torch'; print(f[0].__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "scarce.library"


def test_train_records_the_keyword_config(wide_run):
    run, data = wide_run
    from scarce.config import load_yaml

    cfg = load_yaml(run / "config.yaml")
    assert cfg["data"]["dataset"] == str(data) and cfg["method"]["name"] == "supervised"
    assert (cfg["data"]["size"], cfg["data"]["aspect"], cfg["data"]["intensity"]) == (32, "pad", "percentile")
    assert cfg["eval"]["tta"] == "flip" and cfg["train"]["iterations"] == 6 and cfg["model"]["width"] == 4
    assert json.loads((run / "metrics.json").read_text())["tests"]  # trained and evaluated


def test_train_keyword_forms():
    from scarce.library import _overrides

    assert _overrides({"train": {"iterations": 5}, "train__batch_size": 2, "data__size": 64}) == \
        {"train": {"iterations": 5, "batch_size": 2}, "data": {"size": 64}}
    with pytest.raises(ConfigError, match="not a config key"):
        _overrides({"train__": 1})
    with pytest.raises(ConfigError, match="train.iterations"):  # the whole config is checked first
        scarce.train("synthetic", out="/nonexistent/never", preset="cpu", train__iterations=0)


def test_predict_equals_scarce_predict(wide_run, tmp_path):
    """Path, uint8 array, float array and PIL image give the mask `scarce predict` writes, at the
    input's own (non-square) size; probabilities agree with its --probabilities PNGs."""
    from scarce.api import predict_folder

    run, data = wide_run
    m = scarce.load(run)
    assert (m.size, m.aspect, m.intensity, m.tta, m.classes) == (32, "pad", "percentile", "flip",
                                                                 ["background", "foreground"])
    predict_folder(run, data / "images", tmp_path / "pred", probabilities=True)
    checked = 0
    for path in _test_images(data):
        want = np.asarray(Image.open(tmp_path / "pred" / f"{path.stem}.png")) // 255
        arr = np.asarray(Image.open(path))
        assert arr.shape[:2] == (40, 64)
        for x in (path, str(path), arr, arr.astype(np.float32) / 255, Image.open(path)):
            got = m.predict(x)
            assert got.shape == (40, 64) and got.dtype == np.uint8
            assert np.array_equal(got, want), f"{path.name}: {type(x).__name__} input differs from scarce predict"
        proba = m.predict_proba(arr)
        assert proba.shape == (2, 40, 64) and np.allclose(proba.sum(0), 1, atol=1e-5)
        assert np.array_equal((proba[1] > m.threshold).astype(np.uint8), want)
        png = np.asarray(Image.open(tmp_path / "pred" / "probabilities" / f"{path.stem}.png")) / 255
        assert np.abs(proba[1] - png).max() <= 0.5 / 255 + 1e-6
        checked += 1
    assert checked == 6
    with pytest.raises(ValueError, match="H×W"):
        m.predict(np.zeros((3, 40, 64), np.uint8))


# --------------------------------------------------------------------------- export-model

def _apply_metadata(run_model, meta: dict, path: Path) -> np.ndarray:
    """Segment ``path`` with an exported model using only its metadata (what a user outside
    scarce would do): preprocess as recorded, run, cut the padding, resize, threshold."""
    from scarce.data.folder import read_image_pil
    from scarce.data.load import image_input

    img = read_image_pil(path, channels=meta["channels"])
    x = image_input(img, meta["input_size"], meta["intensity"], meta["aspect"])  # steps 1-4 of "preprocess"
    probs = torch.as_tensor(run_model(x))
    h, w = img.height, img.width
    s = meta["input_size"]
    scale = s / max(h, w)
    ch, cw = max(1, min(s, round(h * scale))), max(1, min(s, round(w * scale)))
    up = torch.nn.functional.interpolate(probs[:, :, :ch, :cw], size=(h, w), mode="bilinear", align_corners=False)
    return (up[0, 1] > meta["threshold"]).numpy().astype(np.uint8)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load in the test itself
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_is_checked_and_self_describing(wide_run, fmt):
    from scarce.model_export import read_export_metadata

    if fmt == "onnx":
        pytest.importorskip("onnx")
        ort = pytest.importorskip("onnxruntime")
    from scarce.model_export import export_model

    run, data = wide_run
    res = export_model(run, fmt, sets=["train.threads=1"], overwrite=True)
    path = Path(res["path"])
    assert path == run / "export" / ("model.onnx" if fmt == "onnx" else "model.torchscript.pt")
    assert res["images"] == 6 and res["max_abs_diff"] <= 1e-4 and res["labels_differing"] == 0
    meta = read_export_metadata(path)
    assert meta["check_max_abs_diff"] == pytest.approx(res["max_abs_diff"])
    assert (meta["input_size"], meta["channels"], meta["aspect"], meta["intensity"]) == (32, 3, "pad", "percentile")
    assert meta["normalisation_in_model"] is False and meta["input_norm"] == "none"
    assert meta["classes"] == ["background", "foreground"] and meta["threshold"] == 0.5 and meta["tta"] == "flip"
    assert "zero-pad at the bottom and right" in meta["preprocess"] and meta["undo_padding"].startswith("aspect=pad")
    record = json.loads((path.parent / (path.name + ".json")).read_text())
    assert record["command"] == "scarce export-model" and record["check_max_abs_diff"] == meta["check_max_abs_diff"]

    if fmt == "onnx":
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == ["image"] and sess.get_inputs()[0].shape == ["N", 3, 32, 32]
        assert sess.get_outputs()[0].shape == ["N", 2, 32, 32]

        def run_model(x):
            return sess.run(None, {"image": x.numpy()})[0]
    else:
        loaded = torch.jit.load(str(path))

        def run_model(x):
            with torch.no_grad():
                return loaded(x)

    m = scarce.load(run)
    for p in _test_images(data):  # the file + its metadata alone reproduce scarce's masks
        assert np.array_equal(_apply_metadata(run_model, meta, p), m.predict(p)), p.name


def test_export_cli_output_policy(wide_run, tmp_path, capsys):
    from scarce.cli import main

    run, data = wide_run
    dest = tmp_path / "models" / "seg.pt"
    assert main(["export-model", str(run), "-f", "torchscript", "-o", str(dest), "--set", "train.threads=1"]) == 0
    out = capsys.readouterr().out
    assert f"to {dest}" in out and "check on 6 test images" in out and "max |difference|" in out
    assert dest.is_file() and (tmp_path / "models" / "seg.pt.json").is_file()
    # the same file again: only with --overwrite (it is this command's)
    assert main(["export-model", str(run), "-f", "torchscript", "-o", str(dest)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export-model", str(run), "-f", "torchscript", "-o", str(dest), "--overwrite",
                 "--set", "train.threads=1"]) == 0
    capsys.readouterr()
    # a user's own file is never replaced, a dataset never written
    own = tmp_path / "mine.pt"
    own.write_text("my notes")
    assert main(["export-model", str(run), "-f", "torchscript", "-o", str(own), "--overwrite"]) == 2
    assert "was not written by `scarce export-model`" in capsys.readouterr().err and own.read_text() == "my notes"
    assert main(["export-model", str(run), "-f", "torchscript", "-o", str(data / "model.pt")]) == 2
    assert "inside the dataset" in capsys.readouterr().err
    assert not (data / "model.pt").exists()
    # the default RUN/export/: this command's folder inside the run; the same file again needs --overwrite
    assert main(["export-model", str(run), "-f", "torchscript", "--overwrite", "--set", "train.threads=1"]) == 0
    assert json.loads((run / "export" / ".scarce").read_text())["command"] == "scarce export-model"
    capsys.readouterr()
    assert main(["export-model", str(run), "-f", "torchscript"]) == 2
    assert "model.torchscript.pt' already exists; pass --overwrite" in capsys.readouterr().err


def test_onnx_without_packages_names_the_extra(wide_run, tmp_path, monkeypatch, capsys):
    from scarce.cli import main

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    assert main(["export-model", str(wide_run[0]), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "onnxruntime" in err and 'pip install "scarce[onnx]"' in err
    assert not (tmp_path / "m.onnx").exists()


def test_a_wrong_export_is_refused(wide_run, tmp_path, monkeypatch):
    """The check compares with scarce's own probabilities: an export that drifts is not written."""
    import scarce.model_export as me

    real = me.probability_net

    def drifting(model, tta="none", window=0):
        net = real(model, tta, window)

        class Shifted(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net(x) * 0.99

        return Shifted().eval()

    monkeypatch.setattr(me, "probability_net", drifting)
    with pytest.raises(ConfigError, match="differs from scarce's own probabilities by up to"):
        me.export_model(wide_run[0], "torchscript", out=tmp_path / "m.pt", sets=["train.threads=1"])
    assert not list(tmp_path.iterdir())
