"""One ``scarce: error:`` line, exit 2 and nothing written (through ``scarce.cli.main``) for:
a ``best.pt`` of another network (evaluate, predict, robustness, tsne); a run trained with
``data.test_sets: []`` (evaluate, evaluate --shifts, robustness, tsne); ``--shifts ""``; an
unwritable ``robustness -o`` (checked before any run is evaluated); ``data.unlabelled`` for a
method without an unlabelled stream. And a folder mixing gray and colour images: read as RGB
with one warning, never decided by its first file.

Run folders are fake (config.yaml + an untrained tiny network as best.pt + metrics.json) on the
built-in synthetic data: no training."""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scarce.cli import main
from tests.test_errors_ux import _one_line_error, _read_only

FAST = ["data.size=32", "data.synthetic_n=40", "data.budget=20", "model.width=4", "model.depth=2",
        "train.iterations=6", "train.val_every=3", "train.batch_size=4", "train.progress=false",
        "train.tensorboard=false", "eval.overlays=1", "train.threads=1"]


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _fake_run(run: Path, tmp_path: Path, *extra: str, weights: dict | None = None) -> Path:
    """A finished run folder (no training) of a tiny U-Net on synthetic data; ``weights``
    replaces the state dict saved as best.pt."""
    from scarce.config import load_config, save_config
    from scarce.models import create_model

    cfg = load_config(sets=[*FAST, f"data.cache_dir={tmp_path / 'cache'}", f"out={run}", *extra])
    (run / "checkpoints").mkdir(parents=True)
    save_config(cfg, run / "config.yaml")
    torch.manual_seed(0)
    if weights is None:
        weights = create_model("unet", in_channels=3, num_classes=2, width=4, depth=2).state_dict()
    torch.save({"model": weights, "step": 6, "score": 0.5}, run / "checkpoints" / "best.pt")
    (run / "metrics.json").write_text(json.dumps({"run_dir": str(run), "best_val": 0.5, "best_step": 6,
                                                  "steps": 6, "tests": {}}))
    return run


def _images(tmp_path: Path) -> Path:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)).save(imgs / "a.png")
    return imgs


def _command(command: str, run: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """The CLI arguments of ``command`` on ``run`` and the output path it must not create."""
    if command == "evaluate":
        return ["evaluate", str(run)], run / "eval"
    if command == "shifts":
        return ["evaluate", str(run), "--shifts", "contrast", "--severities", "1"], run / "eval_shifts"
    if command == "predict":
        return ["predict", str(run), str(_images(tmp_path)), str(tmp_path / "pred")], tmp_path / "pred"
    if command == "robustness":
        return ["robustness", str(run.parent), "-o", str(tmp_path / "rob"), "--shifts", "contrast",
                "--severities", "1"], tmp_path / "rob"
    assert command == "tsne"
    return ["tsne", str(run), "-o", str(tmp_path / "ts")], tmp_path / "ts"


# ------------------------------------------------------------- 1. best.pt of another network
def _deeplab_weights() -> dict:
    from scarce.models import create_model

    return create_model("deeplabv3", in_channels=3, num_classes=2, width=4, backbone="resnet18").state_dict()


def _three_class_weights() -> dict:
    from scarce.models import create_model

    return create_model("unet", in_channels=3, num_classes=3, width=4, depth=2).state_dict()


@pytest.mark.parametrize("command", ["evaluate", "shifts", "predict", "robustness", "tsne"])
@pytest.mark.parametrize("kind", ["deeplab", "classes"])
def test_checkpoint_of_another_network_is_one_line(tmp_path, capsys, command, kind):
    weights = _deeplab_weights() if kind == "deeplab" else _three_class_weights()
    run = _fake_run(tmp_path / "runs" / "run", tmp_path, weights=weights)
    before = _digest(run)
    args, out = _command(command, run, tmp_path)
    assert main(args) == 2
    line = _one_line_error(capsys)
    best = run / "checkpoints" / "best.pt"
    assert f"checkpoint {best} does not fit the 'unet' network" in line, line
    assert "3 input channels, 2 classes" in line and "retrain the run" in line and "--set" in line
    if kind == "deeplab":
        assert "weights are missing" in line and "are not the network's" in line
    else:
        assert "weight 'head.weight' has shape [3, 4, 1, 1] in the checkpoint but [1, 4, 1, 1] in the network" in line
    assert _digest(run) == before and not out.exists()


def test_checkpoint_of_another_network_in_library_calls_is_a_checkpoint_error(tmp_path):
    from scarce.api import load_segmenter
    from scarce.utils.io import CheckpointError

    run = _fake_run(tmp_path / "run", tmp_path, weights=_deeplab_weights())
    with pytest.raises(CheckpointError, match="does not fit") as e:
        load_segmenter(run)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------- 2. a run without test sets
@pytest.mark.parametrize("command", ["evaluate", "shifts", "robustness", "tsne"])
def test_run_without_test_sets_is_one_line(tmp_path, capsys, command):
    run = _fake_run(tmp_path / "runs" / "run", tmp_path, "data.test_sets=[]")
    before = _digest(run)
    args, out = _command(command, run, tmp_path)
    assert main(args) == 2
    line = _one_line_error(capsys)
    assert f"run {run.as_posix()!r} has no test sets" in line and "data.test_sets: []" in line, line
    if command in ("evaluate", "shifts"):
        assert "--test-sets NAME" in line and "--test-sets synthetic" in line
    else:
        assert "--set data.test_sets=[synthetic]" in line
    assert _digest(run) == before and not out.exists()


# ------------------------------------------------------------- 3. --shifts ""
@pytest.mark.parametrize("command", ["evaluate", "robustness"])
def test_empty_shift_list_is_one_line(tmp_path, capsys, command):
    run = _fake_run(tmp_path / "runs" / "run", tmp_path)
    before = _digest(run)
    args = ["evaluate", str(run), "--shifts", ""] if command == "evaluate" else \
        ["robustness", str(run.parent), "-o", str(tmp_path / "rob"), "--shifts", ""]
    assert main(args) == 2
    line = _one_line_error(capsys)
    assert "--shifts names no intensity shift" in line and "'all'" in line
    assert "brightness" in line and "contrast" in line and "xray_shift" in line
    assert _digest(run) == before and not (tmp_path / "rob").exists()


# ------------------------------------------------------------- 4. robustness -o unwritable


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_robustness_unwritable_out_fails_before_any_evaluation(tmp_path, capsys, monkeypatch, code):
    run = _fake_run(tmp_path / "runs" / "run", tmp_path)
    before = _digest(run)
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro, code)
    out = ro / "rob"
    assert main(["robustness", str(run.parent), "-o", str(out), "--shifts", "contrast", "--severities", "1"]) == 2
    line = _one_line_error(capsys)
    assert str(out) in line and os.strerror(code) in line and "-o" in line
    assert _digest(run) == before and not (run / "eval_shifts").exists() and list(ro.iterdir()) == []


def test_robustness_read_only_run_folder_says_runs_read_only_before_any_evaluation(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    a = _fake_run(runs / "a", tmp_path, "train.seed=0")
    b = _fake_run(runs / "b", tmp_path, "train.seed=1")
    before = {r: _digest(r) for r in (a, b)}
    _read_only(monkeypatch, b)
    assert main(["robustness", str(runs), "-o", str(tmp_path / "rob"), "--shifts", "contrast",
                 "--severities", "1"]) == 2
    line = _one_line_error(capsys)
    assert (b / "eval_shifts").as_posix() in line and "--runs-read-only" in line and "nothing was evaluated" in line
    assert {r: _digest(r) for r in (a, b)} == before and not (tmp_path / "rob").exists()


# ------------------------------------------------------------- 5. mixed gray / colour folder
def _mixed_folder(root: Path, modes: dict[str, str]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for stem, mode in modes.items():
        arr = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).convert(mode).save(root / "images" / f"{stem}.png")
        m = np.zeros((24, 24), np.uint8)
        m[4:12, 4:12] = 255
        Image.fromarray(m).save(root / "masks" / f"{stem}.png")
    return root


def test_mixed_gray_and_colour_folder_is_rgb_with_one_warning(tmp_path, capsys):
    from scarce.data.load import load_folder
    from scarce.data.registry import get_info

    folder = _mixed_folder(tmp_path / "mixed", {"a": "L", "b": "RGB", "c": "L"})  # the first file is gray
    with pytest.warns(UserWarning) as rec:
        assert main(["data", "show", str(folder)]) == 0
        assert get_info(str(folder)).channels == 3  # asked again: no second warning
    assert json.loads(capsys.readouterr().out)["channels"] == 3
    msgs = [str(w.message) for w in rec if "mixes gray and colour" in str(w.message)]
    assert len(msgs) == 1, msgs
    assert "2 of 3 are gray, e.g. a.png" in msgs[0] and "colour e.g. b.png" in msgs[0] and "RGB" in msgs[0]
    sd = load_folder(folder, 16)
    assert sd.images.shape == (3, 3, 16, 16)
    assert not torch.equal(sd.images[1, 0], sd.images[1, 1])  # b keeps its colours (not read as luma)
    assert torch.equal(sd.images[0, 0], sd.images[0, 1])  # a replicated


def test_first_file_does_not_decide_the_channels(tmp_path, recwarn):
    from scarce.data.registry import get_info

    folder = _mixed_folder(tmp_path / "rgb", {"a": "RGB", "b": "RGB"})
    gray = np.asarray(Image.open(folder / "images" / "a.png").convert("L").convert("RGB"))
    Image.fromarray(gray).save(folder / "images" / "a.png")  # the first file: gray content stored as RGB
    assert get_info(str(folder)).channels == 3  # b is colour: not read as luma because of a
    Image.fromarray(gray).save(folder / "images" / "b.png")
    assert get_info(str(folder)).channels == 1  # every image gray: one channel, as before
    only_gray = _mixed_folder(tmp_path / "gray", {"a": "L", "b": "L"})
    Image.fromarray(gray).save(only_gray / "images" / "b.png")  # gray modes + gray content in RGB
    assert get_info(str(only_gray)).channels == 1
    assert not [w for w in recwarn if "mixes gray" in str(w.message)]


# ------------------------------------------------------------- 6. data.unlabelled without a stream
def test_unlabelled_pool_for_a_supervised_run_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--method", "supervised", "--out", str(out), *[x for s in FAST for x in ("--set", s)],
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.unlabelled=10"]
    assert main(args) == 2
    line = _one_line_error(capsys)
    assert "'data.unlabelled'" in line and "method 'supervised'" in line
    assert "fixmatch" in line and "mean_teacher" in line and "remove data.unlabelled" in line
    assert not out.exists() and not (tmp_path / "cache").exists()
    # accepted where it is used, and where it picks the test sets: the supervised row of a
    # multi-domain grid (configs/dim/accept.yaml) is scored on its OOD set's test part only
    from scarce.config import load_config
    from scarce.validate import validate_config

    base = ["data.size=32", "model.width=4", "model.depth=2"]
    validate_config(load_config(sets=[*base, "method.name=fixmatch", "data.unlabelled=10"]))
    validate_config(load_config(sets=[*base, "method.name=supervised", "data.unlabelled=[synthetic,synthetic_ood]"]))
