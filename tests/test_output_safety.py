"""Commands that write into a user-named folder never overwrite or delete the user's files:
predict, data synthetic / export-nnunet / split / scribbles, evaluate --out,
gan pretrain --out, demo --out, report OUT. Plus predict's palette PNGs, --overlays,
--probabilities and its handling of an unreadable image.

Predict/evaluate use a *fake* finished run (config.yaml + an untrained tiny U-Net in
checkpoints/best.pt, optionally with a constant head) so no training is needed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scarce.cli import main


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fake_run(path: Path, tmp_path: Path, dataset: str = "synthetic", num_classes: int = 2,
             bias: list[float] | None = None) -> Path:
    """A run folder `predict`/`evaluate` accept; ``bias`` makes the head constant (zero weights)."""
    from scarce.config import load_config, save_config
    from scarce.losses import out_channels
    from scarce.models import create_model
    from scarce.utils.io import atomic_torch_save

    cfg = load_config(sets=[f"out={path}", f"data.dataset={dataset}", "data.size=32", "data.synthetic_n=20", "data.budget=10",
                            f"data.cache_dir={tmp_path / 'cache'}", "model.width=4", "model.depth=2"])
    path.mkdir(parents=True)
    save_config(cfg, path / "config.yaml")
    torch.manual_seed(0)
    model = create_model("unet", in_channels=3, num_classes=num_classes, width=4, depth=2)
    if bias is not None:
        assert len(bias) == out_channels(num_classes)
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.copy_(torch.tensor(bias))
    atomic_torch_save({"model": model.state_dict()}, path / "checkpoints" / "best.pt")
    return path


def _images(folder: Path, n: int = 3, size: tuple[int, int] = (40, 56)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return fake_run(tmp_path / "run", tmp_path)


# ------------------------------------------------------------------------------ predict

def test_predict_into_ground_truth_masks_is_refused(tmp_path, run, synthetic_folder, capsys):
    masks = synthetic_folder / "masks"
    before = _digest(masks)
    for extra in ([], ["--overwrite"]):  # --overwrite never applies to a dataset's masks/
        assert main(["predict", str(run), str(synthetic_folder / "images"), str(masks), *extra]) == 2
        err = capsys.readouterr().err
        assert "masks" in err and err.count("\n") == 1
    assert _digest(masks) == before


def test_predict_into_or_around_the_image_folder_is_refused(tmp_path, run, capsys):
    imgs = _images(tmp_path / "imgs")
    before = _digest(imgs)
    for out, extra, word in ((imgs, [], "is the input folder"), (imgs, ["--overwrite"], "is the input folder"),
                             (imgs / "pred", ["--overwrite"], "inside the input folder"),
                             (tmp_path, ["--overwrite"], "contains the input folder")):
        assert main(["predict", str(run), str(imgs), str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert word in err and err.count("\n") == 1, err
    assert _digest(imgs) == before and not (imgs / "pred").exists()


def test_predict_refuses_a_user_folder_even_with_overwrite_and_overwrite_keeps_other_files(tmp_path, run, capsys):
    imgs = _images(tmp_path / "imgs", n=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0.png").write_bytes(b"mine")
    (out / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):  # a folder predict did not make: never written
        assert main(["predict", str(run), str(imgs), str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert "not empty" in err and "not made by `scarce predict`" in err and err.count("\n") == 1
        assert (out / "img0.png").read_bytes() == b"mine"
    mine = tmp_path / "preds"
    assert main(["predict", str(run), str(imgs), str(mine)]) == 0
    (mine / "notes.txt").write_text("keep me")
    assert main(["predict", str(run), str(imgs), str(mine)]) == 2  # its own folder: --overwrite needed
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", str(run), str(imgs), str(mine), "--overwrite"]) == 0
    assert (mine / "notes.txt").read_text() == "keep me"
    assert np.asarray(Image.open(mine / "img0.png")).shape == (40, 56)


def test_predict_folder_library_overwrite(tmp_path, run):
    from scarce.api import predict_folder
    from scarce.config import ConfigError

    imgs = _images(tmp_path / "imgs", n=1)
    out = tmp_path / "out"
    assert predict_folder(run, imgs, out) == [str(out / "img0.png")]
    with pytest.raises(ConfigError, match="earlier output of `scarce predict`; pass --overwrite"):
        predict_folder(run, imgs, out)
    assert predict_folder(run, imgs, out, overwrite=True) == [str(out / "img0.png")]


def test_predict_multiclass_is_a_palette_png_of_label_ids(tmp_path):
    run = fake_run(tmp_path / "mc", tmp_path, dataset="fundus_drishti", num_classes=3, bias=[0.0, 0.0, 5.0])
    imgs = _images(tmp_path / "imgs", n=1)
    assert main(["predict", str(run), str(imgs), str(tmp_path / "pred")]) == 0
    im = Image.open(tmp_path / "pred" / "img0.png")
    assert im.mode == "P"  # was a gray PNG of raw ids 0/1/2: black in a viewer
    assert np.array_equal(np.asarray(im), np.full((40, 56), 2, np.uint8))  # ids preserved
    from scarce.evaluation.evaluate import LABEL_COLOURS

    assert im.convert("RGB").getpixel((0, 0)) == LABEL_COLOURS[2] != (0, 0, 0)
    # the data layer reads it back as label ids
    from scarce.data.folder import read_mask_raw

    assert (read_mask_raw(tmp_path / "pred" / "img0.png") == 2).all()


def test_predict_overlays_and_probabilities(tmp_path, capsys):
    run = fake_run(tmp_path / "run", tmp_path, bias=[2.0])  # p(fg) = sigmoid(2) everywhere
    imgs = _images(tmp_path / "imgs", n=2, size=(40, 56))
    _images(tmp_path / "big", n=1, size=(520, 600))
    (imgs / "big.png").write_bytes((tmp_path / "big" / "img0.png").read_bytes())
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(imgs), str(out), "--overlays", "--probabilities"]) == 0
    assert "overlays/" in capsys.readouterr().out
    for stem, (h, w) in (("img0", (40, 56)), ("img1", (40, 56)), ("big", (520, 600))):
        mask = np.asarray(Image.open(out / f"{stem}.png"))
        assert mask.shape == (h, w) and (mask == 255).all()
        prob = np.asarray(Image.open(out / "probabilities" / f"{stem}.png"))
        assert prob.shape == (h, w) and prob.dtype == np.uint8
        assert (prob == round(255 * float(torch.sigmoid(torch.tensor(2.0))))).all()
        over = np.asarray(Image.open(out / "overlays" / f"{stem}.png"))
        scale = min(1.0, 512 / max(h, w))
        assert over.shape == (round(h * scale), 2 * round(w * scale), 3)
    # multi-class: one map per foreground class
    mc = fake_run(tmp_path / "mc", tmp_path, dataset="fundus_drishti", num_classes=3, bias=[0.0, 0.0, 5.0])
    assert main(["predict", str(mc), str(tmp_path / "big"), str(tmp_path / "mcp"), "--probabilities"]) == 0
    p1 = np.asarray(Image.open(tmp_path / "mcp" / "probabilities" / "img0_class1.png"))
    p2 = np.asarray(Image.open(tmp_path / "mcp" / "probabilities" / "img0_class2.png"))
    assert p1.shape == p2.shape == (520, 600) and p2.min() > 240 and p1.max() < 10
    assert not (tmp_path / "mcp" / "overlays").exists()


def test_predict_skips_an_unreadable_image_and_says_so(tmp_path, run, capsys):
    imgs = _images(tmp_path / "imgs", n=3)
    (imgs / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "pred"
    with pytest.warns(UserWarning, match=r"skipped .*img1\.png: not a readable image") as rec:
        assert main(["predict", str(run), str(imgs), str(out)]) == 2
    assert not any("pair" in str(w.message) for w in rec)
    err = capsys.readouterr().err
    assert "img1.png" in err and "pair" not in err and "1 of 3 images" in err and err.count("\n") == 1
    assert (out / "img0.png").exists() and (out / "img2.png").exists()  # the batch went on
    assert not (out / "img1.png").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".scarce"]  # no temp files left


# ------------------------------------------------------------------------------ data synthetic

def test_synthetic_never_deletes_user_files(tmp_path, capsys):
    dest = tmp_path / "work"
    dest.mkdir()
    (dest / "thesis.txt").write_text("three years of work")
    assert main(["data", "synthetic", str(dest), "--n", "3", "--size", "16"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "not made by `scarce data synthetic`" in err and err.count("\n") == 1
    assert sorted(p.name for p in dest.iterdir()) == ["thesis.txt"]
    # --overwrite does not open a folder the command did not make
    assert main(["data", "synthetic", str(dest), "--n", "3", "--size", "16", "--overwrite"]) == 2
    assert sorted(p.name for p in dest.iterdir()) == ["thesis.txt"]
    # its own dataset: --overwrite rewrites it and keeps a file the user added
    own = tmp_path / "syn"
    assert main(["data", "synthetic", str(own), "--n", "3", "--size", "16"]) == 0
    (own / "notes.txt").write_text("mine")
    assert main(["data", "synthetic", str(own), "--n", "3", "--size", "16", "--overwrite"]) == 0
    assert (own / "notes.txt").read_text() == "mine"
    assert len(list((own / "images").iterdir())) == 3 and (own / "split.csv").is_file()


def test_synthetic_dot_is_one_line_or_works_in_an_empty_folder(tmp_path, monkeypatch, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "code.py").write_text("print(1)")
    monkeypatch.chdir(busy)
    assert main(["data", "synthetic", ".", "--n", "2", "--size", "16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scarce: error:") and err.count("\n") == 1 and "not empty" in err
    assert [p.name for p in busy.iterdir()] == ["code.py"]
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert main(["data", "synthetic", ".", "--n", "2", "--size", "16"]) == 0
    assert empty.is_dir() and len(list((empty / "masks").iterdir())) == 2
    assert sorted(p.name for p in empty.iterdir() if not p.name.startswith(".")) == ["images", "masks", "split.csv"]


def test_synthetic_failure_leaves_nothing(tmp_path, monkeypatch):
    import scarce.data.synthetic as syn
    from scarce.cli import main as cli_main

    calls = {"n": 0}
    real = syn.synth_pair

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kw)

    monkeypatch.setattr(syn, "synth_pair", flaky)
    dest = tmp_path / "keep"
    dest.mkdir()
    (dest / "thesis.txt").write_text("x")
    assert cli_main(["data", "synthetic", str(dest), "--n", "3", "--size", "16", "--overwrite"]) == 2
    assert [p.name for p in dest.iterdir()] == ["thesis.txt"]  # no images/, no temp folder
    calls["n"] = 0
    assert cli_main(["data", "synthetic", str(tmp_path / "new"), "--n", "3", "--size", "16"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_ensure_synthetic_cache_still_regenerates(tmp_path):
    from scarce.data.synthetic import MARKER, ensure_synthetic

    root = ensure_synthetic(tmp_path / "cache", n=4, size=16)
    marker = root / "synthetic" / MARKER
    marker.write_text('{"n": 99}')  # stale cache: regenerated in place (the cache folder is ours)
    ensure_synthetic(tmp_path / "cache", n=4, size=16)
    assert '"n": 4' in marker.read_text() and len(list((root / "synthetic" / "images").iterdir())) == 4


# ------------------------------------------------------------------------------ other data writers

def test_export_nnunet_never_into_the_source_and_overwrite_replaces_an_export(tmp_path, synthetic_folder, capsys):
    before = _digest(synthetic_folder)
    assert main(["data", "export-nnunet", str(synthetic_folder), str(synthetic_folder)]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert _digest(synthetic_folder) == before
    raw = tmp_path / "raw"
    assert main(["data", "export-nnunet", str(synthetic_folder), str(raw), "--id", "3"]) == 0
    ds = raw / "Dataset003_synthetic_folder"
    assert main(["data", "export-nnunet", str(synthetic_folder), str(raw), "--id", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "export-nnunet", str(synthetic_folder), str(raw), "--id", "3", "--overwrite"]) == 0
    assert (ds / "dataset.json").is_file()
    (ds / "my_notes.txt").write_text("x")  # not an export any more: --overwrite would delete it
    assert main(["data", "export-nnunet", str(synthetic_folder), str(raw), "--id", "3", "--overwrite"]) == 2
    assert "my_notes.txt" in capsys.readouterr().err and (ds / "my_notes.txt").exists()


def test_split_out_existing_file_needs_overwrite(tmp_path, synthetic_folder, capsys):
    path = tmp_path / "split.json"
    path.write_text("my own file")
    args = ["data", "split", str(synthetic_folder), "--budget", "5", "--out", str(path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and err.count("\n") == 1
    assert main([*args, "--overwrite"]) == 2  # not a split file: never replaced
    assert "was not written by `scarce data split`" in capsys.readouterr().err
    assert path.read_text() == "my own file"
    ours = tmp_path / "ours.json"
    args = ["data", "split", str(synthetic_folder), "--budget", "5", "--out", str(ours)]
    assert main(args) == 0 and main(args) == 2
    assert main([*args, "--overwrite"]) == 0 and '"train"' in ours.read_text()
    assert main(["data", "split", str(synthetic_folder), "--budget", "5", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_scribbles_never_replace_existing_scribbles(tmp_path, synthetic_folder, capsys):
    sc = synthetic_folder / "scribbles"
    sc.mkdir()
    (sc / "syn_0000.png").write_bytes(b"hand drawn")
    (sc / "README.txt").write_text("drawn by Dr. X")
    args = ["data", "scribbles", str(synthetic_folder), "--length", "0.5"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "not made by `scarce data scribbles`" in err
    assert main([*args, "--overwrite"]) == 2  # hand-drawn scribbles are never replaced
    assert (sc / "syn_0000.png").read_bytes() == b"hand drawn"
    (sc / "syn_0000.png").unlink()
    (sc / "README.txt").unlink()
    assert main(args) == 0  # an empty scribbles/ of a dataset: the command's own annotation folder
    (sc / "README.txt").write_text("drawn by Dr. X")
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert (sc / "README.txt").read_text() == "drawn by Dr. X"  # other files kept
    assert len(list(sc.glob("syn_*.png"))) == 12 and (sc / "meta.json").is_file()


# ------------------------------------------------------------------------------ evaluate, gan, demo, report

def test_evaluate_out_refuses_foreign_folders_and_the_run_folder(tmp_path, run, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "paper.tex").write_text("x")
    assert main(["evaluate", str(run), "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and err.count("\n") == 1
    assert [p.name for p in mine.iterdir()] == ["paper.tex"]
    for out in (run, tmp_path):  # the run folder itself (its metrics.json) or a folder containing it
        assert main(["evaluate", str(run), "--out", str(out), "--overwrite"]) == 2
        assert "run" in capsys.readouterr().err
    assert not (run / "metrics.json").exists() and not (run / "summary.txt").exists()


@pytest.mark.slow
def test_evaluate_out_rewrites_an_earlier_evaluation(tmp_path, run, capsys):
    ev = tmp_path / "ev"
    args = ["evaluate", str(run), "--out", str(ev), "--test-sets", "synthetic", "--set", "eval.overlays=0"]
    assert main(args) == 0
    assert (ev / "metrics.json").is_file()
    assert main(args) == 0  # an earlier evaluation folder needs no --overwrite


def test_gan_pretrain_out_refuses_a_folder_with_other_files(tmp_path, capsys):
    out = tmp_path / "g"
    out.mkdir()
    (out / "data.csv").write_text("x")
    assert main(["gan", "pretrain", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "data.csv" in err
    assert [p.name for p in out.iterdir()] == ["data.csv"]


def test_demo_out_refuses_a_folder_with_other_files(tmp_path, capsys):
    out = tmp_path / "proj"
    out.mkdir()
    (out / "src.py").write_text("x")
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["src.py"]


def test_report_out_is_runs_or_foreign_is_refused_earlier_report_is_rewritten(tmp_path, capsys):
    import json

    runs = tmp_path / "runs"
    run = fake_run(runs / "r0", tmp_path)  # a finished run: config.yaml + metrics.json
    (run / "metrics.json").write_text(json.dumps({"tests": {"synthetic": {"dice_mean": 0.9, "dice_std": 0.0,
                                                                          "n": 4}}}))
    assert main(["report", str(runs), str(runs)]) == 2  # the runs folder itself: its files would be mixed in
    assert "is the folder" in capsys.readouterr().err and not (runs / "results.md").exists()
    assert main(["report", str(runs), str(runs / "report")]) == 0  # a grid's own layout: the report is no run
    assert main(["report", str(runs), str(runs / "report")]) == 0  # rewritten, and not counted as a run
    assert main(["report", str(runs / "report"), str(tmp_path / "r2")]) == 2  # and holds no run
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "figure.png").write_bytes(b"x")
    assert main(["report", str(runs), str(mine)]) == 2
    assert "not empty" in capsys.readouterr().err and not (mine / "results.md").exists()
    rep = tmp_path / "rep"
    assert main(["report", str(runs), str(rep)]) == 0
    assert main(["report", str(runs), str(rep)]) == 0  # an earlier report is rewritten
    assert main(["report", str(runs), str(mine), "--overwrite"]) == 2  # never into a user's folder
    assert not (mine / "results.md").exists()
    (rep / "figure.png").write_bytes(b"x")  # a file added to a report folder survives its rewrite
    assert main(["report", str(runs), str(rep), "--overwrite"]) == 0
    assert (rep / "figure.png").read_bytes() == b"x" and (rep / "results.md").is_file()


def test_predict_names_files_it_cannot_read_instead_of_skipping_them_silently(tmp_path, run, capsys):
    imgs = _images(tmp_path / "imgs", n=1)
    (imgs / "scan.mha").write_bytes(b"not a format scarce reads")
    with pytest.warns(UserWarning, match=r"1 file\(s\) are neither images nor volumes scarce reads \(scan\.mha\), "
                                         r"skipped: .*the other 1 go on"):
        assert main(["predict", str(run), str(imgs), str(tmp_path / "out")]) == 0
    (imgs / "scan.nii.gz").write_bytes(b"\x1f\x8b not really a volume")  # a volume scarce reads, but corrupt
    with pytest.warns(UserWarning, match=r"skipped .*scan\.nii\.gz: not a readable volume"):
        assert main(["predict", str(run), str(imgs), str(tmp_path / "out1")]) == 2
    assert "1 of 2 images could not be read and were skipped (scan.nii.gz)" in capsys.readouterr().err
    assert len(list((tmp_path / "out1").glob("*.png"))) == 1  # the readable image's mask is written
    only = tmp_path / "only"
    only.mkdir()
    (only / "scan.mha").write_bytes(b"x")
    assert main(["predict", str(run), str(only), str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert "holds no images" in err and "scan.mha" in err and err.count("\n") == 1
