"""Ctrl-C / SIGTERM stop training at a checkpoint instead of losing the steps since the last
validation, a second signal stops at once, and a grid asked to stop starts no further run."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from scarce.engine.trainer import Trainer
from scarce.utils import interrupt
from scarce.utils.interrupt import Interrupted
from tests.tiny import tiny_config, tiny_run_data

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(autouse=True)
def _sigint_reaches_the_process():
    """A background job of a non-interactive shell (`pytest &`, nohup) starts with SIGINT ignored,
    and scarce rightly leaves an ignored signal alone (test_an_ignored_signal_stays_ignored); these
    tests are about a SIGINT that does reach the process, so they start from Python's default."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.method.segmenter.state_dict().items()}


def _log(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "sec_per_step"} for r in csv.DictReader(open(run / "log.csv"))]


def _signal_at(trainer: Trainer, step: int, signals: list[int]) -> None:
    """Deliver ``signals`` to this process while the method trains step ``step`` (1-based)."""
    inner = trainer.method.training_step

    def step_fn(batch, i):
        out = inner(batch, i)
        if i + 1 == step:
            for s in signals:
                os.kill(os.getpid(), s)
        return out

    trainer.method.training_step = step_fn


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_window_checkpoints_that_step_and_resume_is_identical(tmp_path, sig):
    method = {"name": "supervised", "augment": "combine"}
    kw = dict(iterations=9, val_every=4, log_every=3)  # step 5: neither a validation nor a log step
    full = Trainer(tiny_config(tmp_path / "a", method, **kw), tiny_run_data(), tmp_path / "a")
    full.fit()
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    part = Trainer(tiny_config(tmp_path / "b", method, **kw), tiny_run_data(), tmp_path / "b")
    _signal_at(part, 5, [sig])
    with pytest.raises(Interrupted) as e:
        part.fit()
    assert (e.value.signum, e.value.step, e.value.run_dir) == (sig, 5, str(tmp_path / "b"))
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["step"] == 5
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored
    assert interrupt.requested() is None  # handled: the next fit in this process starts clean
    resumed = Trainer(tiny_config(tmp_path / "b", method, **kw), tiny_run_data(), tmp_path / "b")
    assert resumed.fit(resume=True).steps == 9
    for k, v in _weights(full).items():
        assert torch.equal(v, _weights(resumed)[k]), k
    # the log row after the interruption averages steps 4–6 as in the uninterrupted run
    assert _log(tmp_path / "a") == _log(tmp_path / "b")


def test_a_second_signal_stops_at_once(tmp_path):
    t = Trainer(tiny_config(tmp_path, {"name": "supervised"}, iterations=9, val_every=2), tiny_run_data(), tmp_path)
    _signal_at(t, 3, [signal.SIGINT, signal.SIGINT])
    with pytest.raises(KeyboardInterrupt) as e:
        t.fit()
    assert not isinstance(e.value, Interrupted)
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 2  # the last validation's
    assert interrupt.requested() is None


def test_an_ignored_signal_stays_ignored(tmp_path):
    """A shell starts background jobs with SIGINT ignored: training must not take it up."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        t = Trainer(tiny_config(tmp_path, {"name": "supervised"}, iterations=4), tiny_run_data(), tmp_path)
        _signal_at(t, 1, [signal.SIGINT])
        assert t.fit().steps == 4
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


GRID_BASE = {"preset": "cpu", "data": {"size": 32, "synthetic_n": 40}, "model": {"width": 4, "depth": 2},
             "train": {"iterations": 6, "val_every": 4, "batch_size": 4, "tensorboard": False},
             "eval": {"overlays": 0, "save_predictions": False}}


def _grid(tmp_path: Path, out: str, **train) -> dict:
    base = json.loads(json.dumps(GRID_BASE))
    base["data"]["cache_dir"] = str(tmp_path / "cache")
    base["train"].update(train)
    return {"name": "stop", "out": str(tmp_path / out), "workers": 1, "threads": 1, "base": base,
            "datasets": ["synthetic"], "budgets": [20], "seeds": [0, 1, 2],
            "methods": [{"label": "sup", "method": {"name": "supervised"}}]}


def test_grid_in_this_process_stops_after_the_run_in_flight_and_resumes(tmp_path, monkeypatch):
    from scarce.engine import trainer as trainer_mod
    from scarce.experiments import run_grids

    fit = trainer_mod.Trainer.fit

    def fit_with_signal(self, *a, **kw):  # seed 1 is asked to stop at its step 5
        if self.cfg.train.seed == 1 and not (self.run_dir / "checkpoints").exists():
            _signal_at(self, 5, [signal.SIGINT])
        return fit(self, *a, **kw)

    monkeypatch.setattr(trainer_mod.Trainer, "fit", fit_with_signal)
    lines: list[str] = []
    with pytest.raises(Interrupted, match="the same command resumes the grid"):
        run_grids([_grid(tmp_path, "runs")], report=False, progress=False, log=lines.append)
    runs = tmp_path / "runs" / "synthetic" / "sup-unet" / "b20"
    assert (runs / "s0" / "metrics.json").exists()
    assert torch.load(runs / "s1" / "checkpoints" / "last.pt", weights_only=True)["step"] == 5
    assert not (runs / "s1" / "metrics.json").exists() and not (runs / "s1" / "FAILED.txt").exists()
    assert not (runs / "s2").exists()  # never started
    assert any("s1: interrupted at step 5 of 6" in ln for ln in lines)
    assert interrupt.requested() is None
    monkeypatch.setattr(trainer_mod.Trainer, "fit", fit)
    res = run_grids([_grid(tmp_path, "runs")], report=False, progress=False, log=lambda *_: None)
    assert (res[0]["ran"], res[0]["failed"]) == (2, [])
    # the interrupted run ends as it would have uninterrupted
    run_grids([_grid(tmp_path, "plain")], report=False, progress=False, log=lambda *_: None)
    strip = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if k not in ("run_dir", "seconds", "time")}
    other = tmp_path / "plain" / "synthetic" / "sup-unet" / "b20"
    for s in ("s1", "s2"):
        assert strip(runs / s / "metrics.json") == strip(other / s / "metrics.json")
        assert _log(runs / s) == _log(other / s)


@pytest.mark.slow
def test_sigterm_to_the_grid_process_alone_stops_its_workers_at_a_checkpoint(tmp_path):
    """SIGTERM to the grid process only (a scheduler's or `kill PID`'s): the workers are told,
    the runs in flight checkpoint and stop, the queued runs never start, the exit code is 143."""
    grid = _grid(tmp_path, "runs", iterations=100000, val_every=100000)
    grid.update(workers=2, seeds=[0, 1, 2, 3])
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "scarce.cli", "experiment", str(path), "--no-report"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = tmp_path / "runs" / "synthetic" / "sup-unet" / "b20"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not all((runs / f"s{s}" / "log.csv").exists() or
                                                  (runs / f"s{s}" / ".scarce.lock").exists() for s in (0, 1)):
            time.sleep(0.5)
        time.sleep(5)  # both runs are training
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "stopped by SIGTERM" in err
    for s in (0, 1):
        assert torch.load(runs / f"s{s}" / "checkpoints" / "last.pt", weights_only=True)["step"] > 0
        assert not (runs / f"s{s}" / "metrics.json").exists() and not (runs / f"s{s}" / "FAILED.txt").exists()
        assert not (runs / f"s{s}" / ".scarce.lock").exists()
    assert not (runs / "s2").exists() and not (runs / "s3").exists()


def test_signal_during_gan_pretraining_stops_there_and_leaves_nothing(tmp_path, monkeypatch):
    """The GAN's pretraining (before the first step, no checkpoint of its own) must not hold a
    Ctrl-C until it ends: it stops, the run's new files go, and the same call then trains."""
    from scarce.methods.gan import pretrain

    calls = {"n": 0}

    class Probe:  # the loop's check, with a SIGINT delivered just before its 3rd call
        def __getattr__(self, name):
            return getattr(interrupt, name)

        @staticmethod
        def check(detail):
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGINT)
            interrupt.check(detail)

    monkeypatch.setattr(pretrain, "interrupt", Probe())
    from scarce.api import train_run

    def cfg():
        c = tiny_config(tmp_path / "run", iterations=2)
        c.method = {"name": "separate", "pretrain_iters": 5, "gallery": 0}
        c.data.dataset, c.data.synthetic_n, c.data.budget = "synthetic", 40, 20
        c.data.cache_dir = str(tmp_path / "cache")
        c.eval.overlays = 0
        return c

    with pytest.raises(Interrupted, match="during the GAN's pretraining") as e:
        train_run(cfg())
    assert e.value.step is None and calls["n"] == 3
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    assert interrupt.requested() is None
    assert train_run(cfg())["steps"] == 2
