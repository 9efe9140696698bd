"""Intensity-shift stress test: the shift registry's contract, hand-computed values,
``evaluate_shifts`` / ``scarce evaluate --shifts`` end to end on a tiny trained run, the
``scarce robustness`` grid report, and the one-line errors / output-folder refusals."""
from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from scarce.cli import main
from scarce.evaluation.shifts import (CHUNK, SEVERITIES, SHIFT_PARAMS, SHIFTS, apply_shift, check_severities,
                                      resolve_shifts, shifted_images)

ALL = SHIFTS.names()


def _images(channels: int, n: int = 3, size: int = 24, seed: int = 0) -> torch.Tensor:
    """Random texture plus a smooth ramp, in [0, 1] (both ends present)."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size).view(1, 1, 1, size).expand(n, channels, size, size)
    x = 0.5 * torch.rand(n, channels, size, size, generator=g) + 0.5 * ramp
    x[:, :, 0, 0], x[:, :, -1, -1] = 0.0, 1.0
    return x.contiguous()


# --------------------------------------------------------------------------- the shifts themselves

def test_registry_holds_the_documented_shifts():
    assert ALL == sorted(SHIFT_PARAMS) == sorted(["brightness", "contrast", "gamma", "dark_gamma", "blur", "noise",
                                                 "lowres", "xray_shift"])
    assert all(len(v) == len(SEVERITIES) for v in SHIFT_PARAMS.values())


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", ALL)
def test_every_shift_keeps_the_contract(name, channels):
    x = _images(channels)
    before = x.clone()
    assert apply_shift(name, x, 0) is x  # severity 0 = the input itself (bit-exact identity)
    mad = [0.0]
    for s in SEVERITIES:
        y = apply_shift(name, x, s, torch.Generator().manual_seed(3))
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert torch.equal(y, apply_shift(name, x, s, torch.Generator().manual_seed(3)))  # deterministic
        mad.append(float((y - x).abs().mean()))
    assert all(a < b for a, b in zip(mad, mad[1:])), f"{name}: not monotone in severity: {mad}"
    assert torch.equal(x, before)  # never in place
    y64 = apply_shift(name, x.double(), 2)
    assert y64.dtype == torch.float64


@pytest.mark.parametrize("name", [n for n in ALL if n != "noise"])
def test_rgb_gets_the_same_op_on_every_channel(name):
    """A gray image stored as RGB is shifted exactly like the gray image (no colour cast)."""
    gray = _images(1)
    rgb = apply_shift(name, gray.expand(-1, 3, -1, -1).contiguous(), 3)
    one = apply_shift(name, gray, 3)
    for c in range(3):
        assert torch.allclose(rgb[:, c:c + 1], one, atol=1e-5)


def test_noise_comes_from_the_explicit_generator_only():
    x = _images(3)
    torch.manual_seed(123)
    a = apply_shift("noise", x, 2, torch.Generator().manual_seed(1))
    torch.manual_seed(456)  # the global RNG plays no part
    assert torch.equal(a, apply_shift("noise", x, 2, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, apply_shift("noise", x, 2, torch.Generator().manual_seed(2)))
    assert torch.equal(apply_shift("noise", x, 2), apply_shift("noise", x, 2, torch.Generator().manual_seed(0)))


def test_brightness_contrast_gamma_xray_by_hand():
    x = torch.tensor([0.0, 0.2, 0.4, 0.95]).view(1, 1, 2, 2)
    # brightness, severity 1: + 0.1, clipped at 1
    assert torch.allclose(apply_shift("brightness", x, 1), torch.tensor([0.1, 0.3, 0.5, 1.0]).view(1, 1, 2, 2))
    # contrast, severity 2: (x - mean)·0.5 + mean, mean = 0.3875
    m = 0.3875
    want = torch.tensor([(v - m) * 0.5 + m for v in (0.0, 0.2, 0.4, 0.95)]).view(1, 1, 2, 2)
    assert torch.allclose(apply_shift("contrast", x, 2), want)
    # gamma, severity 3: x^0.5; dark_gamma, severity 3: x^2
    assert torch.allclose(apply_shift("gamma", x, 3), x.sqrt())
    assert torch.allclose(apply_shift("dark_gamma", x, 3), x ** 2)
    # xray_shift, severity 1: contrast ×0.7 then + 0.1
    want = torch.tensor([(v - m) * 0.7 + m + 0.1 for v in (0.0, 0.2, 0.4, 0.95)]).clamp(0, 1).view(1, 1, 2, 2)
    assert torch.allclose(apply_shift("xray_shift", x, 1), want)
    # blur of a constant image is the image; lowres of a constant image too
    flat = torch.full((1, 1, 16, 16), 0.3)
    assert torch.allclose(apply_shift("blur", flat, 3), flat) and torch.allclose(apply_shift("lowres", flat, 3), flat)


def test_names_and_severities_are_checked():
    from scarce.config import ConfigError

    assert resolve_shifts(None) == resolve_shifts("all") == resolve_shifts(["all"]) == list(SHIFT_PARAMS)
    assert resolve_shifts("blur,contrast") == resolve_shifts(["contrast", "blur", "blur"]) == ["contrast", "blur"]
    with pytest.raises(KeyError, match="Did you mean 'contrast'"):
        resolve_shifts("contrst,blur")
    with pytest.raises(KeyError, match="Did you mean 'brightness'"):
        apply_shift("brightnes", _images(1), 1)
    assert check_severities([3, 1, 0, 1]) == (1, 3)
    for bad in ([4], [1.5], [True], [0]):
        with pytest.raises(ConfigError):
            check_severities(bad)
    with pytest.raises(ConfigError, match="0..3"):
        apply_shift("blur", _images(1), 5)
    with pytest.raises(ValueError, match="N×C×H×W"):
        apply_shift("blur", torch.zeros(4, 4), 1)


def test_shifted_images_chunks_and_preprocessing():
    from scarce.data.intensity import preprocess_intensity

    x = _images(3, n=CHUNK + 5, size=16)
    assert shifted_images(x, "none", 0) is x
    y = shifted_images(x, "noise", 1, seed=7)
    assert torch.equal(y[:CHUNK], apply_shift("noise", x[:CHUNK], 1, torch.Generator().manual_seed(7)))
    assert torch.equal(y[CHUNK:], apply_shift("noise", x[CHUNK:], 1, torch.Generator().manual_seed(8)))
    # with data.intensity: shift first, then the run's preprocessing of the 8-bit image
    u8 = (x * 255).round() / 255
    z = shifted_images(u8, "contrast", 3, intensity="percentile")
    shifted = apply_shift("contrast", u8[:1], 3)[0].mul(255).round().to(torch.uint8).numpy()
    assert np.array_equal((z[0] * 255).round().to(torch.uint8).numpy(), preprocess_intensity(shifted, "percentile"))
    ref = shifted_images(u8, "none", 0, intensity="percentile")  # = what the normal evaluation feeds
    direct = preprocess_intensity((u8[0] * 255).round().to(torch.uint8).numpy(), "percentile")
    assert np.array_equal((ref[0] * 255).round().to(torch.uint8).numpy(), direct)


# --------------------------------------------------------------------------- run folders

def fake_run(path: Path, tmp_path: Path, seed: int = 0, label: str = "a", finished: bool = True) -> Path:
    """A run folder with an *untrained* tiny U-Net as best.pt (finished: + metrics.json), synthetic data."""
    from scarce.config import load_config, save_config
    from scarce.models import create_model
    from scarce.utils.io import atomic_torch_save, atomic_write_json

    cfg = load_config(sets=[f"out={path}", "data.dataset=synthetic", "data.size=32", "data.synthetic_n=20",
                            "data.budget=10", f"data.cache_dir={tmp_path / 'cache'}", "model.width=4",
                            "model.depth=2", f"train.seed={seed}", f"label={label}", "train.threads=1"])
    path.mkdir(parents=True)
    save_config(cfg, path / "config.yaml")
    torch.manual_seed(seed)
    model = create_model("unet", in_channels=3, num_classes=2, width=4, depth=2)
    atomic_torch_save({"model": model.state_dict()}, path / "checkpoints" / ("best.pt" if finished else "last.pt"))
    if finished:
        atomic_write_json(path / "metrics.json", {"tests": {}})
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cli_bad_shift_or_severity_is_one_line_and_writes_nothing(tmp_path, capsys):
    run = fake_run(tmp_path / "run", tmp_path)
    before = _digest(run)
    for args, text in ((["--shifts", "contrst"], "unknown intensity shift 'contrst'. Did you mean 'contrast'?"),
                       (["--shifts", "blur", "--severities", "4"], "shift severity must be 0, 1, 2 or 3"),
                       (["--severities", "2"], "--severities needs --shifts")):
        assert main(["evaluate", str(run), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("scarce: error: ") and text in err, err
    assert main(["robustness", str(tmp_path), "-o", str(tmp_path / "rob"), "--shifts", "nois"]) == 2
    assert "Did you mean 'noise'" in capsys.readouterr().err
    assert _digest(run) == before and not (tmp_path / "rob").exists()


def test_shift_output_folder_refusals(tmp_path, capsys):
    run = fake_run(tmp_path / "run", tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    assert main(["evaluate", str(run), "--shifts", "all", "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "shift evaluation folder" in err and "not empty" in err and err.count("\n") == 1
    for out in (run, tmp_path):  # the run folder itself, or a folder holding it: never, even with --overwrite
        assert main(["evaluate", str(run), "--shifts", "all", "--out", str(out), "--overwrite"]) == 2
        assert "whose files it would overwrite" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"] and not (run / "eval_shifts").exists()
    # robustness: OUT never a runs folder (or above it); a foreign folder needs --overwrite
    grid = tmp_path / "grid"
    fake_run(grid / "synthetic" / "a-unet" / "b10" / "s0", tmp_path)
    for out in (grid, tmp_path):
        assert main(["robustness", str(grid), "-o", str(out), "--overwrite"]) == 2
        assert "robustness report folder" in capsys.readouterr().err
    assert main(["robustness", str(grid), "-o", str(mine)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["robustness", str(tmp_path / "nope"), "-o", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["robustness", str(empty), "-o", str(tmp_path / "r")]) == 2
    assert "no finished run" in capsys.readouterr().err and not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- a tiny trained run

FAST = ["--set", "data.size=32", "--set", "data.synthetic_n=40", "--set", "data.budget=20", "--set", "model.width=4",
        "--set", "model.depth=2", "--set", "train.iterations=40", "--set", "train.val_every=10",
        "--set", "train.batch_size=4", "--set", "train.progress=false", "--set", "train.tensorboard=false",
        "--set", "eval.overlays=0", "--set", "eval.save_predictions=false", "--set", "train.threads=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("shift_run")
    run = tmp / "run"
    assert main(["train", *FAST, "--set", f"data.cache_dir={tmp / 'cache'}", "--out", str(run)]) == 0
    return run


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_evaluate_shifts_end_to_end(trained, tmp_path):
    from scarce.api import evaluate_shifts, shift_evaluation_current

    shifts, sev = ["contrast", "blur", "noise"], (1, 3)  # in registry order, as results list them
    out = tmp_path / "sh"
    rows = evaluate_shifts(trained, shifts, sev, out=out)
    tests = json.loads((trained / "metrics.json").read_text())["tests"]
    assert list(tests) == ["synthetic", "synthetic_ood"]
    expected = [(t, n, s) for t in tests for (n, s) in [("none", 0)] + [(n, s) for n in shifts for s in sev]]
    assert [(r["test_set"], r["shift"], r["severity"]) for r in rows] == expected
    on_disk = _csv(out / "shifts.csv")
    assert [(r["test_set"], r["shift"], int(r["severity"])) for r in on_disk] == expected
    assert {"n", "dice_mean", "dice_std", "jaccard_mean", "jaccard_std"} <= set(on_disk[0])
    assert sorted(p.name for p in out.iterdir()) == [".scarce", "shifts.csv", "shifts.json", "shifts.md"]  # no PNGs
    by = {(r["test_set"], r["shift"], r["severity"]): r for r in rows}
    for t, m in tests.items():  # the unshifted reference is the run's own evaluation
        assert by[(t, "none", 0)]["dice_mean"] == pytest.approx(m["dice_mean"], abs=1e-9)
        assert by[(t, "none", 0)]["n"] == m["n"]
    ref = by[("synthetic", "none", 0)]["dice_mean"]
    assert by[("synthetic", "contrast", 3)]["dice_mean"] < ref - 0.05  # dark lesions on bright skin: lost
    assert all(by[("synthetic", n, 3)]["dice_mean"] != ref for n in shifts)  # every shift changes predictions
    md = (out / "shifts.md").read_text()
    assert md.startswith("# Intensity-shift stress test") and "| contrast |" in md and "## synthetic_ood" in md
    # resume bookkeeping: up to date for what was asked (or less), not for more or another severity
    assert shift_evaluation_current(trained, out, ["noise"], (3,))
    assert not shift_evaluation_current(trained, out, ["gamma"], (3,))
    assert not shift_evaluation_current(trained, out, shifts, (2,))
    assert not shift_evaluation_current(trained, out, shifts, sev, sets=["eval.tta=flip"])
    # default folder: <run>/eval_shifts
    evaluate_shifts(trained, "contrast", (1,), test_sets=["synthetic"])
    assert len(_csv(trained / "eval_shifts" / "shifts.csv")) == 2


@pytest.mark.slow
def test_shifts_act_before_the_runs_intensity_preprocessing(trained, tmp_path):
    """With data.intensity=percentile the run's own preprocessing undoes a contrast change: the
    stress test must see that (shifting after the preprocessing would hide it)."""
    from scarce.api import evaluate_run, evaluate_shifts

    pct = ["data.intensity=percentile", "eval.overlays=0", "eval.save_predictions=false"]
    rows = evaluate_shifts(trained, ["contrast"], (1, 2, 3), test_sets=["synthetic"], out=tmp_path / "s", sets=pct)
    plain = evaluate_run(trained, ["synthetic"], out=str(tmp_path / "e"), sets=pct)
    assert rows[0]["dice_mean"] == pytest.approx(plain["synthetic"]["dice_mean"], abs=1e-9)
    for r in rows[1:]:
        assert r["dice_mean"] == pytest.approx(rows[0]["dice_mean"], abs=0.02)


@pytest.mark.slow
def test_cli_evaluate_shifts_prints_a_table_and_rewrites_its_own_folder(trained, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["evaluate", str(trained), "--shifts", "contrast,xray_shift", "--severities", "3", "--test-sets",
            "synthetic", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "dice under intensity shifts" in text and "xray_shift" in text and "synthetic (n=" in text
    assert main(args) == 0  # an earlier shift evaluation needs no --overwrite
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["shift"], r["severity"]) for r in rows] == [("none", 0), ("contrast", 3), ("xray_shift", 3)]


# --------------------------------------------------------------------------- the grid report

@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:skipped 1 unfinished run")
def test_robustness_report_on_a_two_seed_grid(tmp_path, capsys):
    import pandas as pd

    from scarce.reports.tables import format_cell
    from scarce.robustness import run_robustness

    grid = tmp_path / "grid"
    for label, seeds in (("a", (0, 1)), ("b", (10, 11))):
        for i, s in enumerate(seeds):
            fake_run(grid / "synthetic" / f"{label}-unet" / "b10" / f"s{i}", tmp_path, seed=s, label=f"{label}-unet")
    fake_run(grid / "synthetic" / "a-unet" / "b10" / "s2", tmp_path, seed=2, label="a-unet", finished=False)
    before = _digest(grid)
    out = tmp_path / "rob"
    # read-only mode through the CLI: the run folders stay byte-identical
    args = ["robustness", str(grid), "-o", str(out), "--shifts", "contrast,noise", "--severities", "1", "3",
            "--runs-read-only"]
    with pytest.warns(UserWarning, match=r"skipped 1 unfinished run\(s\).*a-unet/b10/s2"):
        assert main(args) == 0
    assert "4 runs: 4 evaluated" in capsys.readouterr().out
    assert _digest(grid) == before
    assert len(list((out / "per_run").glob("*/shifts.csv"))) == 4
    md = (out / "robustness.md").read_text()
    assert md.startswith("# Robustness") and "1 unfinished run(s) skipped" in md
    table = (out / "synthetic_synthetic_dice_shifts.md").read_text()
    assert table.splitlines()[0] == "| row | unshifted | contrast | noise | mean (all shifts) |"
    assert "±" in table and "| a-unet |" in table and "| b-unet |" in table
    png = out / "synthetic_synthetic_dice_shifts.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "synthetic_synthetic_ood_dice_shifts.png").is_file()
    # a cell by hand: per run the mean over severities 1 and 3, then mean ± sample std over the two seeds
    per_run = []
    for f in sorted((out / "per_run").glob("*a-unet*/shifts.csv")):
        d = pd.read_csv(f)
        d = d[(d["test_set"] == "synthetic") & (d["shift"] == "contrast")]
        per_run.append(float(d["dice_mean"].mean()))
    assert len(per_run) == 2
    cell = format_cell(float(np.mean(per_run)), float(np.std(per_run, ddof=1)))
    assert f"| a-unet | " in table and cell in table.splitlines()[2] + table.splitlines()[3]
    long = pd.read_csv(out / "robustness.csv")
    # 2 test sets × 2 rows × (unshifted + 2 shifts × 2 severities)
    assert len(long) == 2 * 2 * 5 and set(long["n_seeds"]) == {2}
    assert long.iloc[0]["shift"] == "none" and not math.isnan(long.iloc[0]["std"])
    # resume: nothing evaluated again; the same report
    res = run_robustness([grid], out, "contrast,noise", (1, 3), runs_read_only=True, log=lambda m: None)
    assert res["evaluated"] == [] and len(res["reused"]) == 4 and (out / "robustness.md").read_text() == md
    # default mode writes <run>/eval_shifts/ (and resumes from there); a subset of shifts reuses them
    res = run_robustness([grid], tmp_path / "rob2", "contrast,noise", (1, 3), log=lambda m: None)
    assert len(res["evaluated"]) == 4
    assert all((grid / "synthetic" / r / "b10" / s / "eval_shifts" / "shifts.csv").is_file()
               for r in ("a-unet", "b-unet") for s in ("s0", "s1"))
    res = run_robustness([grid], tmp_path / "rob2", "noise", (3,), log=lambda m: None)
    assert res["evaluated"] == [] and len(res["reused"]) == 4
    assert "| row | unshifted | noise | mean (all shifts) |" in (tmp_path / "rob2" / "robustness.md").read_text()
