"""Installing beside other stacks (version ranges + constraints file, extras, ``python -m scarce``,
shell completion, a built wheel in a fresh venv) and small own folders (``data.budget=all``, the
default budget on a folder with fewer images, report labels that name the encoder)."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


# ---------------------------------------------------------------- installs beside other stacks

def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="Python < 3.11 has no tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirements() -> dict[str, str]:
    """{distribution name (lower case): full requirement string} of pyproject's dependencies."""
    from packaging.requirements import Requirement

    return {Requirement(d).name.lower(): d for d in _pyproject()["project"]["dependencies"]}


def _constraints() -> dict[str, str]:
    out = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact NAME==VERSION pin"
            out[name.strip().lower()] = version.strip()
    return out


def test_requirements_are_ranges_and_the_constraints_file_pins_them():
    from packaging.requirements import Requirement

    reqs = _requirements()
    for name in ("torch", "monai", "kornia"):  # the pins that clashed with MONAI / nnU-Net stacks
        spec = Requirement(reqs[name]).specifier
        assert not any(s.operator == "==" for s in spec), f"{name} is pinned exactly: {reqs[name]}"
        assert any(s.operator == ">=" for s in spec) and any(s.operator == "<" for s in spec), reqs[name]
    pins = _constraints()
    assert pins["torch"] == "2.13.0"  # the local CPU wheel: other specs can pull CUDA wheels
    assert "monai" in pins and "kornia" in pins
    for name, req in reqs.items():  # every pinned version satisfies the package's own range
        if name in pins:
            assert Requirement(req).specifier.contains(pins[name], prereleases=True), (name, req, pins[name])
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {"weak", "nifti", "dicom", "onnx", "tb", "completion"} <= set(extras)
    assert not any("maxflow" in r.lower() or "densecrf" in r.lower() for r in extras["weak"])  # never imported
    assert "tensorboard" not in reqs and any(r.startswith("tensorboard") for r in extras["tb"])


def test_readme_and_ci_install_with_the_constraints_file():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert 'python -m pip install -q -c constraints.txt -e ".[test,weak]" && python -m pytest -q' in ci
    assert 'python -m pip install -q -c constraints.txt -e ".[test,weak]" && python -m pytest -q' in readme
    assert 'python -m pip install -c constraints.txt -e ".[weak,tb]" && scarce demo' in readme


def test_python_dash_m_scarce():
    r = subprocess.run([sys.executable, "-m", "scarce", "--help"], capture_output=True, text=True, env=ENV,
                       cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: scarce") and "train" in r.stdout and "--print-completion" in r.stdout


def test_completion_script(capsys):
    pytest.importorskip("shtab", reason="shtab not installed (pip install shtab)")
    from scarce.cli import main

    assert main(["--print-completion", "bash"]) == 0
    bash = capsys.readouterr().out
    assert "complete" in bash and "experiment" in bash and "--set" in bash
    assert main(["--print-completion", "zsh"]) == 0
    assert "#compdef scarce" in capsys.readouterr().out


def test_completion_without_shtab_is_one_line(monkeypatch, capsys):
    from scarce.cli import main

    monkeypatch.setitem(sys.modules, "shtab", None)  # as if it were not installed
    assert main(["--print-completion", "bash"]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.count("\n") == 1 and "pip install shtab" in cap.err


def test_missing_tensorboard_is_one_warning_and_the_run_goes_on(tmp_path, monkeypatch):
    from scarce.api import train_run
    from scarce.config import load_config

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as without the tb extra
    out = tmp_path / "run"
    sets = [f"out={out}", "data.size=32", "data.synthetic_n=40", "data.budget=10", "model.width=4",
            "model.depth=2", "train.batch_size=4", "train.iterations=2", "train.val_every=2",
            "train.progress=false", "train.tensorboard=true", "train.threads=1", "eval.overlays=0",
            "eval.save_predictions=false", f"data.cache_dir={tmp_path / 'cache'}"]
    with pytest.warns(UserWarning, match="tensorboard package is not installed") as rec:
        res = train_run(load_config(sets=sets))
    assert res["steps"] == 2 and (out / "log.csv").is_file() and not (out / "tb").exists()
    assert sum("tensorboard" in str(w.message) for w in rec) == 1


def test_missing_gco_is_one_config_error(monkeypatch):
    from scarce.config import ConfigError
    from scarce.methods.weak.stage_a import solve_many

    monkeypatch.setitem(sys.modules, "gco", None)  # as without the weak extra
    with pytest.raises(ConfigError, match=r"gco-wrapper.*pip install"):
        solve_many([object()], workers=2)  # refused before any job is looked at or a worker spawned


def _have_wheel_tools() -> str | None:
    """Why the wheel test cannot run here (None when it can)."""
    for mod in ("venv", "ensurepip", "pip", "setuptools"):
        if importlib.util.find_spec(mod) is None:
            return f"the {mod} module is not available"
    return None


@pytest.mark.slow
def test_built_wheel_installs_into_a_fresh_venv(tmp_path):
    """Build the wheel from the sources (no build isolation: setuptools is already here), install it
    with --no-deps into a fresh venv that sees this environment's packages (nothing downloaded), and
    run the installed `scarce --help` there, away from the checkout."""
    why = _have_wheel_tools()
    if why:
        pytest.skip(why)
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info next to the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "scarce", src / "scarce", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(dist)], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    wheels = sorted(dist.glob("scarce-*.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    import zipfile

    with zipfile.ZipFile(wheels[0]) as whl:
        meta = next(whl.read(n).decode() for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
    torch_req = [line for line in meta.splitlines() if line.startswith("Requires-Dist: torch")]
    assert torch_req and "==" not in torch_req[0], torch_req  # installs beside another torch build
    venv = tmp_path / "venv"
    env = {k: v for k, v in ENV.items() if k not in ("PYTHONPATH", "PYTHONHOME")}  # the venv's own scarce
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], capture_output=True,
                       text=True, env=env, timeout=300)
    if r.returncode != 0:
        pytest.skip(f"python -m venv failed here: {r.stderr.strip()[-300:]}")
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheels[0])],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    away = tmp_path / "elsewhere"
    away.mkdir()
    r = subprocess.run([str(venv / "bin" / "scarce"), "--help"], capture_output=True, text=True, env=env,
                       cwd=away, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("usage: scarce") and "demo" in r.stdout
    # the venv's own copy (not this checkout) answered, with its presets and demo config shipped
    code = ("import scarce, importlib.resources as res; print(scarce.__file__); "
            "print(res.files('scarce').joinpath('configs', 'demo.yaml').is_file())")
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env, cwd=away, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    where, shipped = r.stdout.split()
    assert Path(where).resolve().is_relative_to(venv.resolve()) and shipped == "True", r.stdout + r.stderr


# ---------------------------------------------------------------- small own folders

@pytest.fixture
def own20(tmp_path) -> Path:
    """An unregistered folder of 20 labelled images, no split.csv: 4 held out for test, 16 left."""
    from scarce.data.synthetic import make_synthetic

    folder = make_synthetic(tmp_path / "own20", 20, size=48, seed=0)
    (folder / "split.csv").unlink()
    return folder


def _split(folder: Path, *sets: str):
    from scarce.config import load_config
    from scarce.data.load import split_for_config
    from scarce.validate import validate_config

    cfg = load_config(None, [f"data.dataset={folder}", *sets])
    validate_config(cfg)
    return split_for_config(cfg.data, 0)


def test_budget_all_takes_every_labelled_image(own20, synthetic_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all is asked for: no warning
        sp = _split(own20, "data.budget=all")
        official = _split(synthetic_folder, "data.budget=ALL")  # split.csv: 10 train / 2 test
    assert sp.budget == 16 and len(sp.train) == 13 and len(sp.val) == 3 and len(sp.test) == 4
    assert not set(sp.train + sp.val) & set(sp.test)
    assert official.budget == 10 and sorted(official.train + official.val) == sorted(
        s for s in (p.stem for p in (synthetic_folder / "images").iterdir()) if s not in official.test)
    from scarce.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="an integer or 'all'"):
        load_config(None, ["data.budget=most"])


def test_small_own_folder_uses_all_with_one_warning_and_registered_stays_strict(own20):
    from scarce.data.folder import scan_folder
    from scarce.data.load import dataset_split
    from scarce.data.registry import DATASETS
    from scarce.data.types import DataError

    with pytest.warns(UserWarning, match=r"data.budget=40 \(the default\).*using all 16 \(13 training \+ 3 "
                                         r"validation\)") as rec:
        sp = _split(own20)  # the default budget, 40
    assert len(rec) == 1 and sp.budget == 16 and len(sp.train + sp.val) == 16
    with pytest.raises(DataError, match="choose data.budget <= 16"):  # a budget other than the default
        _split(own20, "data.budget=30")
    # the same 16 images under a registered dataset's name: the strict, clear error
    with pytest.raises(DataError, match="larger than the labelled pool of 'synthetic'.*data.budget=all"):
        dataset_split(DATASETS.get("synthetic"), scan_folder(own20), 40, 0)


def test_first_run_on_own_20_images_trains_with_the_defaults(own20, tmp_path):
    """`scarce train` on one's own 20 images with the default budget: one warning line, the run
    finishes, and its report row says 16 labelled images."""
    from scarce.reports.tables import collect_runs

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "scarce", "train", "--set", f"data.dataset={own20}", "--set", "data.size=32",
           "--set", "model.width=4", "--set", "model.depth=2", "--set", "train.iterations=2",
           "--set", "train.val_every=2", "--set", "train.batch_size=4", "--set", "train.progress=false",
           "--set", "train.tensorboard=false", "--set", "train.threads=1", "--set", "eval.overlays=0",
           "--set", "eval.save_predictions=false", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    said = [line for line in r.stderr.splitlines() if "data.budget=40 (the default)" in line]
    assert len(said) == 1 and said[0].startswith("scarce: warning: ") and "using all 16" in said[0], r.stderr
    assert json.loads((out / "split.json").read_text())["budget"] == 16
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["budget"] == 40  # as asked
    df = collect_runs(out)
    assert set(df["budget"]) == {16} and set(df["row"]) == {"supervised-unet"}


def test_report_budget_of_a_budget_all_run(tmp_path):
    from scarce.reports.tables import run_budget

    run = tmp_path / "r"
    run.mkdir()
    cfg = {"data": {"dataset": "mine", "budget": "all"}}
    assert run_budget(run, cfg) is None  # no split.json: nothing to tell
    (run / "split.json").write_text(json.dumps({"budget": 23}))
    assert run_budget(run, cfg) == 23
    assert run_budget(run, {"data": {"budget": 40}}) == 23  # the number the split used


# ---------------------------------------------------------------- report labels name the segmenter

def test_row_labels_name_the_encoder_only_when_one_is_set():
    from scarce.config import load_config, to_dict
    from scarce.reports.tables import row_label

    base = {"method": {"name": "supervised", "augment": "combine"}, "model": {"name": "unet"}}
    assert row_label(base) == "supervised+combine-unet"
    assert row_label({**base, "model": {"name": "unet", "encoder": None}}) == "supervised+combine-unet"
    assert row_label({**base, "model": {"name": "unet", "encoder": "efficientnet_lite0"}}) == \
        "supervised+combine-unet-lite0"
    assert row_label({"method": {"name": "fixmatch"}, "model": {"name": "deeplabv3", "encoder": "efficientnet_lite2"}}) \
        == "fixmatch-deeplabv3-lite2"
    assert row_label({**base, "model": {"name": "unet", "encoder": "efficientnet_lite0"}, "row": "Ours"}) == "Ours"
    # resolved configs: the pretrained default and the from-scratch preset are told apart
    quality = row_label(to_dict(load_config(None, ["method.augment=combine"], preset="quality")))
    scratch = row_label(to_dict(load_config(None, ["method.augment=combine"], preset="cpu")))
    assert quality == "supervised+combine-unet-lite0" and scratch == "supervised+combine-unet"


def test_committed_records_keep_their_labels():
    """Every committed run record whose model has an encoder carries its own grid label, so the
    encoder suffix relabels none of the published tables."""
    configs = sorted((REPO / "docs" / "results").rglob("config.yaml"))
    if not configs:
        pytest.skip("no committed run records")
    from scarce.reports.tables import row_label

    for path in configs:
        cfg = yaml.safe_load(path.read_text()) or {}
        if isinstance(cfg, dict) and (cfg.get("model") or {}).get("encoder"):
            assert cfg.get("row") or cfg.get("label"), path
            assert row_label(cfg) == str(cfg.get("row") or cfg.get("label"))
