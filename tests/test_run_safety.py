"""One process per run folder (and per grid), and a config checked as a whole before anything is
created: bad values end with one ``scarce: error:`` line, exit 2, and leave ``--out`` untouched."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from scarce.cli import main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--set", "data.size=32", "--set", "data.synthetic_n=40", "--set", "data.budget=20",
        "--set", "model.width=4", "--set", "model.depth=2", "--set", "train.batch_size=4",
        "--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", "eval.overlays=0",
        "--set", "eval.save_predictions=false", "--set", "train.threads=1"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _wait_for_lock(lock: Path, proc: subprocess.Popen, timeout: float = 120.0) -> dict:
    """The holder details once ``proc`` holds ``lock`` (fails the test if it never does)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if lock.exists() and lock.stat().st_size:
            try:
                return json.loads(lock.read_text())
            except ValueError:  # being written
                pass
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) without holding {lock}: {err[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"{lock} never appeared: the folder is not locked")


def _one_error_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("scarce: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# --------------------------------------------------------------------------- locks

@pytest.mark.slow
def test_second_training_into_one_folder_is_refused_and_the_first_is_intact(tmp_path, capsys):
    run, cache = tmp_path / "run", ["--set", f"data.cache_dir={tmp_path / 'cache'}"]
    steps = ["--set", "train.iterations=60", "--set", "train.val_every=20"]
    first = subprocess.Popen([sys.executable, "-m", "scarce.cli", "train", *FAST, *cache, *steps, "--out", str(run)],
                             cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        holder = _wait_for_lock(run / ".scarce.lock", first)
        assert holder["pid"] == first.pid
        # the second process (another seed, as in the report) is refused while the first trains
        assert main(["train", *FAST, *cache, *steps, "--set", "train.seed=1", "--out", str(run)]) == 2
        _one_error_line(capsys.readouterr().err, f"pid {first.pid}", "in use", "--out")
        assert first.poll() is None, "the first run ended before the second was refused: test too fast"
        _, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-3000:]
    assert not (run / ".scarce.lock").exists()  # released: nothing left behind
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == 0
    # the first run's results are exactly those of the same run made alone
    assert main(["train", *FAST, *cache, *steps, "--out", str(tmp_path / "alone")]) == 0
    got = json.loads((run / "metrics.json").read_text())
    want = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    assert got["best_step"] == want["best_step"] and got["best_val"] == pytest.approx(want["best_val"], abs=1e-6)
    assert got["tests"]["synthetic"]["dice_mean"] == pytest.approx(want["tests"]["synthetic"]["dice_mean"], abs=1e-6)


HOLD = """
import sys, time
from scarce.utils.lock import acquire
acquire(sys.argv[1], what="run folder")
print("locked", flush=True)
time.sleep(600)
"""


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    from scarce.utils.lock import LOCK_NAME, FolderLockedError, acquire

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLockedError, match=f"pid {holder.pid} "):
            acquire(run)
        holder.send_signal(signal.SIGKILL)  # kill -9: no cleanup code runs
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.stdout.close()
    assert (run / LOCK_NAME).exists()  # left behind by the killed holder
    with pytest.warns(UserWarning, match=f"stale lock of pid {holder.pid} .*no longer running"):
        lock = acquire(run)
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert list(run.iterdir()) == []  # the release removes the lock file (the folder was not ours to remove)
    lock.release()  # a second release is a no-op


def test_lock_is_exclusive_in_process_and_released(tmp_path):
    from scarce.utils.lock import FolderLockedError, acquire, lock_folder

    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    with lock_folder(tmp_path / "keep") as lock:
        with pytest.raises(FolderLockedError, match=rf"pid {os.getpid()} .*; wait for it"):
            acquire(tmp_path / "keep")
        assert lock.path.exists()
    assert sorted(p.name for p in (tmp_path / "keep").iterdir()) == ["notes.txt"]  # user files kept
    with lock_folder(tmp_path / "new" / "deeper"):
        pass
    assert not (tmp_path / "new").exists()  # created by the lock (with its parent), empty again: removed


GRID = {
    "name": "g", "workers": 1,
    "base": {"data": {"size": 32, "synthetic_n": 40}, "model": {"width": 4, "depth": 2},
             "train": {"iterations": 40, "val_every": 20, "batch_size": 4, "tensorboard": False, "threads": 1},
             "eval": {"overlays": 0, "save_predictions": False}},
    "datasets": ["synthetic"], "methods": [{"label": "sup", "method": {"name": "supervised"}}],
    "budgets": [20], "seeds": [0],
}


@pytest.mark.slow
def test_second_experiment_on_one_grid_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "runs"
    grid = dict(GRID, out=str(out), report=str(tmp_path / "report"))
    grid["base"] = dict(grid["base"], data=dict(grid["base"]["data"], cache_dir=str(tmp_path / "cache")))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    first = subprocess.Popen([sys.executable, "-m", "scarce.cli", "experiment", str(path)], cwd=tmp_path, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lock(out / ".scarce-grid.lock", first)
        assert main(["experiment", str(path)]) == 2
        _one_error_line(capsys.readouterr().err, "grid folder", f"pid {first.pid}")
        _, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-3000:]
    assert (out / "synthetic" / "sup-unet" / "b20" / "s0" / "metrics.json").exists()
    assert not (out / ".scarce-grid.lock").exists()
    assert main(["experiment", str(path)]) == 0  # afterwards: resumes (nothing to do)


def test_grid_run_held_by_another_process_is_reported_not_marked_failed(tmp_path):
    from scarce.experiments import _run_one, expand_grid
    from scarce.utils.lock import lock_folder

    spec = expand_grid(dict(GRID, out=str(tmp_path / "runs")))[0]
    with lock_folder(spec.run_dir):
        out, status = _run_one(spec.config, 1)
    assert "in use by pid" in status
    assert not spec.run_dir.exists()  # no FAILED.txt written into another process's run


def test_grid_run_in_this_process_leaves_torch_threads_as_they_were(tmp_path, monkeypatch):
    """With one worker a grid's runs train in the grid's process: the grid's ``threads`` and the
    trainer's ``train.threads`` hold for the run only. A thread count left behind changed what ran
    next in the process (dense_gd's resume was not exact above one thread)."""
    import warnings

    import torch

    import scarce.api
    from scarce.experiments import _run_one, expand_grid

    base = GRID["base"]
    grid = dict(GRID, out=str(tmp_path / "runs"), base=dict(
        base, data=dict(base["data"], cache_dir=str(tmp_path / "cache")),
        train=dict(base["train"], iterations=2, val_every=2, threads=2)))
    spec = expand_grid(grid)[0]
    train_run, seen = scarce.api.train_run, []

    def spy(cfg, **kw):
        seen.append(torch.get_num_threads())  # the grid's threads
        out = train_run(cfg, **kw)
        seen.append(torch.get_num_threads())  # the run's train.threads
        return out

    monkeypatch.setattr(scarce.api, "train_run", spy)
    before, fmt = torch.get_num_threads(), warnings.formatwarning
    torch.set_num_threads(1)
    try:
        assert _run_one(spec.config, 3)[1] == "ok"
        assert seen == [3, 2]
        assert torch.get_num_threads() == 1
        assert warnings.formatwarning is fmt
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- config validation

CASES = {
    "batch_size": (["--set", "train.batch_size=0"], "train.batch_size"),
    "val_every": (["--set", "train.val_every=0"], "train.val_every"),
    "iterations_0": (["--set", "train.iterations=0"], "train.iterations"),
    "iterations_neg": (["--set", "train.iterations=-5"], "train.iterations"),
    "size_vs_stride": (["--set", "model.depth=4", "--set", "data.size=100"], "data.size"),
    "lr": (["--set", "train.optim.lr=0"], "train.optim.lr"),
    "threshold": (["--set", "eval.threshold=1.5"], "eval.threshold"),
    "log_every": (["--set", "train.log_every=0"], "train.log_every"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_value_is_one_line_and_creates_nothing(tmp_path, capsys, case):
    extra, key = CASES[case]
    out = tmp_path / "run"
    assert main(["train", *FAST, "--set", "train.iterations=4", "--set", "train.val_every=2", *extra,
                 "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, repr(key))
    assert not out.exists()


def test_size_error_names_the_stride_and_working_sizes(tmp_path, capsys):
    assert main(["train", *FAST, "--set", "model.depth=4", "--set", "data.size=100", "--out", str(tmp_path / "r")]) == 2
    _one_error_line(capsys.readouterr().err, "stride 16", "96", "112")


def test_unavailable_device_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "run"
    assert main(["train", *FAST, "--set", "train.device=cuda", "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, "'train.device'", "cuda", "train.device=cpu")
    assert not out.exists()
    assert main(["train", *FAST, "--set", "train.device=gpu", "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, "'train.device'", "'gpu'")
    assert not out.exists()


def test_section_that_is_not_a_mapping_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: 5\n")
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, "'train'", "got 5")
    assert not out.exists()
    cfg.write_text("train:\n  optim: adam\n")
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, "'train.optim'")
    assert not out.exists()


def test_empty_yaml_section_keeps_the_preset(tmp_path):
    from scarce.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n#  iterations: 5\n#  batch_size: 2\nmethod:\nmodel:\n")
    c = load_config(cfg)
    preset = load_config()
    assert c.train.iterations == preset.train.iterations == 400  # the cpu preset's, not the dataclass' 1000
    assert c.model.width == preset.model.width == 8
    assert c.method == {"name": "supervised"}


def test_empty_yaml_section_keeps_the_preset_through_the_cli(tmp_path, capsys, monkeypatch):
    import scarce.api

    seen = {}
    monkeypatch.setattr(scarce.api, "train_run", lambda cfg, resume=False: seen.setdefault("cfg", cfg) and {})
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n#  iterations: 5\n")
    main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert seen["cfg"].train.iterations == 400


def test_validate_config_checks_method_and_names():
    from scarce.config import ConfigError, load_config
    from scarce.validate import validate_config

    validate_config(load_config())  # the defaults are valid
    with pytest.raises(KeyError, match="supervised"):
        validate_config(load_config(sets=["method.name=supervized"]))
    with pytest.raises(ConfigError, match="Did you mean 'adam'"):
        validate_config(load_config(sets=["train.optim.name=adm"]))
    with pytest.raises(ConfigError, match="'data.val_fraction'"):
        validate_config(load_config(sets=["data.val_fraction=1.5"]))
    with pytest.raises(ConfigError, match="'model'"):
        validate_config(load_config(sets=["model.depth=0"]))
    with pytest.raises(ConfigError, match="'data.size'"):  # deeplabv3 at output stride 16
        validate_config(load_config(sets=["model.name=deeplabv3", "data.size=120"]))


# --------------------------------------------------------------------------- failures after the folder exists

def test_failure_before_first_checkpoint_leaves_nothing_and_the_corrected_rerun_works(tmp_path, monkeypatch):
    from scarce.api import train_run
    from scarce.config import load_config
    from scarce.methods.supervised.supervised import Supervised

    out = tmp_path / "run"
    sets = [f"out={out}", "data.size=32", "data.synthetic_n=40", "data.budget=20", "model.width=4",
            "model.depth=2", "train.batch_size=4", "train.iterations=4", "train.val_every=2",
            "train.progress=false", "train.threads=1", "eval.overlays=0", "eval.save_predictions=false"]

    def boom(self, batch, step):
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr(Supervised, "training_step", boom)
        with pytest.raises(RuntimeError, match="boom"):
            train_run(load_config(sets=sets + ["train.tensorboard=true"]))
    assert not out.exists()  # no config.yaml / split.json / tb/ / lock left
    res = train_run(load_config(sets=sets + ["train.seed=3"]))  # "corrected" command, another config
    assert res["steps"] == 4 and (out / "metrics.json").exists()


def test_config_left_by_a_run_killed_before_its_first_checkpoint_does_not_block(tmp_path):
    from scarce.api import train_run
    from scarce.config import load_config, save_config

    out = tmp_path / "run"
    sets = [f"out={out}", "data.size=32", "data.synthetic_n=40", "data.budget=20", "model.width=4",
            "model.depth=2", "train.batch_size=4", "train.iterations=2", "train.val_every=2",
            "train.progress=false", "train.tensorboard=false", "train.threads=1", "eval.overlays=0",
            "eval.save_predictions=false"]
    out.mkdir()
    save_config(load_config(sets=sets + ["train.batch_size=0"]), out / "config.yaml")  # as a killed run left it
    with pytest.warns(UserWarning, match="before its first checkpoint"):
        res = train_run(load_config(sets=sets))
    assert res["steps"] == 2
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["batch_size"] == 4



def test_grid_runs_of_an_absolute_dataset_path_stay_inside_the_grid(tmp_path, synthetic_folder):
    """A dataset given as an absolute (or ``..``) path used to put its run folders inside the
    user's dataset folder; they belong under the grid's ``out``."""
    from scarce.experiments import expand_grid

    out = tmp_path / "grid"
    grid = {"out": str(out), "datasets": [str(synthetic_folder.resolve())], "methods": [{"label": "sup", "method": {"name": "supervised"}}],
            "seeds": [0], "budgets": [10], "base": {"data": {"size": 32}}}
    (spec,) = expand_grid(grid)
    assert spec.run_dir.resolve().is_relative_to(out.resolve())
    assert not spec.run_dir.resolve().is_relative_to(synthetic_folder.resolve())
    assert spec.run_dir.parts[len(out.parts)] == synthetic_folder.resolve().name


def test_a_method_default_changed_since_a_run_started_is_not_applied_on_resume(tmp_path, capsys, monkeypatch):
    """config.yaml keeps the method section as written (reports read axes from it), so a default
    that changed between a run's start and its resume was applied to the rest of the run without
    a word; method.json records the method as it started and the resume is refused, naming the
    field and the --set that continues the run as it started."""
    import dataclasses

    from scarce.experiments import RunSpec, _check_unchanged
    from scarce.methods.supervised.supervised import Supervised, SupervisedConfig

    run, cache = tmp_path / "run", ["--set", f"data.cache_dir={tmp_path / 'cache'}"]
    steps = ["--set", "train.iterations=2", "--set", "train.val_every=2"]
    assert main(["train", *FAST, *cache, *steps, "--out", str(run)]) == 0
    started = json.loads((run / "method.json").read_text())
    assert started == {"name": "supervised", "augment": "none", "intensity": "none", "intensity_params": {}}
    assert yaml.safe_load((run / "config.yaml").read_text())["method"] == {"name": "supervised"}  # as written
    assert main(["train", *FAST, *cache, *steps, "--out", str(run), "--resume"]) == 0  # same defaults: fine
    capsys.readouterr()

    @dataclasses.dataclass
    class Changed(SupervisedConfig):  # a later release changes the default
        augment: str = "flip"

    monkeypatch.setattr(Supervised, "Config", Changed)
    assert main(["train", *FAST, *cache, *steps, "--out", str(run), "--resume"]) == 2
    _one_error_line(capsys.readouterr().err, "method.augment differ", "default of method.augment changed",
                    "then method.augment='none'", "add --set method.augment=none")
    # the grid that made the run refuses it too (a table would mix two settings), saying what to write
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    with pytest.raises(Exception, match="write augment: none into the grid's method row"):
        _check_unchanged([RunSpec(run, cfg, "synthetic", "x", "unet", 20, 0)])
    _check_unchanged([RunSpec(run, {**cfg, "method": {"name": "supervised", "augment": "none"}},
                              "synthetic", "x", "unet", 20, 0)])
    # the hint works: spelling the old value out continues the run as it started
    assert main(["train", *FAST, *cache, *steps, "--set", "method.augment=none", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "method.json").read_text()) == started  # the first record is kept
    # a value written in the run's config is no "changed default": the plain refusal, no hint
    assert main(["train", *FAST, *cache, *steps, "--set", "method.augment=rotate", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "method.augment differ" in err and "default of" not in err
