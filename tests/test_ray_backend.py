"""Grids on Ray (`scarce experiment GRID --backend ray`) and the grid progress line.

The Ray test starts a 2-CPU local Ray cluster, runs a tiny grid through it and checks it against
the local backend: same run folders and metrics (CPU runs are deterministic), same report, the
same per-run failure report, finished runs skipped on the second call. Ray is optional: the
end-to-end test skips (with the reason) where it is not installed or cannot start."""
from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from scarce.cli import main
from scarce.utils.progress import GridProgress, format_duration, format_grid_progress, grid_eta

GRID = {
    "name": "t", "out": "runs", "report": "report", "workers": 1,
    "base": {"data": {"size": 32, "synthetic_n": 40, "cache_dir": "cache"},
             "model": {"width": 4, "depth": 2},
             "train": {"iterations": 4, "val_every": 2, "batch_size": 4, "tensorboard": False},
             "eval": {"overlays": 0, "save_predictions": False}},
    # "bad" is a dataset folder (relative: it resolves on the Ray workers only because they run in
    # the driver's working folder) with a missing mask: its run fails, the others finish
    "datasets": ["synthetic", {"name": "bad", "budgets": [5], "seeds": [0]}],
    "methods": [{"label": "supervised", "method": {"name": "supervised", "augment": "none"}}],
    "models": ["unet"], "budgets": [10], "seeds": [0, 1],
}
THREADS = ["--set", "base.train.threads=1"]
GOOD = ["synthetic/supervised-unet/b10/s0", "synthetic/supervised-unet/b10/s1"]
BAD = "bad/supervised-unet/b5/s0"


# --------------------------------------------------------------------------- progress line

def test_duration_format():
    assert [format_duration(s) for s in (None, float("nan"), 0, 42.4, 185, 7620, 3 * 86400 + 4 * 3600)] == \
        ["?", "?", "0s", "42s", "3m05s", "2h07m", "3d04h"]


def test_grid_eta_from_finished_runs():
    assert grid_eta([], 4, 2) is None  # nothing finished yet: no estimate
    assert grid_eta([10.0], 0, 2) == 0.0  # nothing left
    assert grid_eta([10.0, 20.0], 4, 2) == pytest.approx(30.0)  # mean 15 s × 4 runs / 2 at a time
    assert grid_eta([10.0], 1, 8) == pytest.approx(10.0)  # one run left: the free slots do not help it


def test_grid_progress_line_counts_and_eta():
    assert format_grid_progress("foundation", 12, 5, 2, 1, 200) == \
        "grid foundation: 5/12 done, 2 running, 1 failed, ETA 3m20s"
    assert format_grid_progress("", 3, 0, 2, 0, None) == "grid: 0/3 done, 2 running, 0 failed, ETA ?"


def test_grid_progress_prints_plain_lines_where_no_live_bar_can_go():
    """Not a terminal (a StringIO, a log file): one plain line at the start and per ended run,
    counting runs finished before this call as done."""
    stream = io.StringIO()
    p = GridProgress("g", total=5, done=1, todo=4, slots=2, stream=stream)
    assert p.bar is None or p.bar.disable
    p.start()
    p.run_ended(True, 60.0)
    p.run_ended(False, 1.0)  # a failed run: counted, not in the ETA
    p.run_ended(True, 120.0)
    p.run_ended(True, 90.0)
    p.close()
    assert stream.getvalue().splitlines() == [
        "grid g: 1/5 done, 2 running, 0 failed, ETA ?",
        "grid g: 2/5 done, 2 running, 0 failed, ETA 1m30s",  # 60 s × 3 left / 2 at a time
        "grid g: 2/5 done, 2 running, 1 failed, ETA 1m00s",
        "grid g: 3/5 done, 1 running, 1 failed, ETA 1m30s",
        "grid g: 4/5 done, 0 running, 1 failed, ETA 0s",
    ]
    quiet = io.StringIO()
    GridProgress("g", 5, 1, 4, 2, stream=quiet, enabled=False).start()
    assert quiet.getvalue() == ""


# --------------------------------------------------------------------------- options and errors

def _grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(GRID))
    return path


def test_ray_missing_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["experiment", str(_grid_file(tmp_path)), "--backend", "ray", *THREADS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scarce: error: ")
    assert 'pip install -e ".[ray]"' in err
    assert not (tmp_path / "runs").exists()  # refused before the grid folder was made


@pytest.mark.parametrize("extra,needle", [
    (["--address", "auto"], "--backend ray"),
    (["--gpus-per-run", "1"], "--backend ray"),
    (["--backend", "ray", "--gpus-per-run", "-1"], "'gpus'"),
    (["--backend", "ray", "--set", "gpus=two"], "'gpus'"),
])
def test_backend_option_errors_are_one_line(tmp_path, monkeypatch, capsys, extra, needle):
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", str(_grid_file(tmp_path)), *THREADS, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scarce: error: ") and needle in err, err
    assert not (tmp_path / "runs").exists()


def test_cuda_runs_without_gpus_on_ray_are_refused():
    """0 GPUs per run would leave CUDA runs on an unreserved GPU (or a CPU-only node). (Checked on
    the specs: a driver without CUDA already refuses train.device=cuda when validating them.)"""
    from scarce.config import ConfigError
    from scarce.experiments import RunSpec, _check_ray_devices

    spec = RunSpec(Path("runs/x"), {"train": {"device": "cuda:0"}}, "synthetic", "sup", "unet", 10, 0)
    with pytest.raises(ConfigError, match=r"train.device=cuda:0 .*--gpus-per-run 1"):
        _check_ray_devices([spec], (1, 0.0))
    _check_ray_devices([spec], (1, 1.0))  # one GPU per run: fine
    _check_ray_devices([RunSpec(Path("runs/y"), {"train": {"device": "auto"}}, "s", "l", "m", 1, 0)], (1, 0.0))


def test_import_scarce_and_experiments_do_not_import_ray():
    import subprocess

    code = "import sys, scarce, scarce.experiments, scarce.cli; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- end to end on Ray

@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster for this module (skips with the reason when none can start)."""
    ray = pytest.importorskip("ray", reason="the Ray backend is optional: pip install -e \".[ray]\"")
    import logging

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, logging_level=logging.WARNING)
    except Exception as e:  # noqa: BLE001 - any failure to start means "cannot test here"
        shutil.rmtree(temp, ignore_errors=True)
        pytest.skip(f"ray cannot start a local cluster here: {type(e).__name__}: {e}")
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def _metrics(run: Path) -> dict:
    d = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in d.items() if k not in ("run_dir", "time", "seconds", "created")}


def _failed_lines(err: str) -> list[str]:
    return [ln.strip() for ln in err.splitlines() if ln.startswith("  ")]


@pytest.mark.slow
def test_grid_on_ray_matches_local_backend_skips_finished_and_reports_failures(tmp_path, monkeypatch, capsys,
                                                                               ray_cluster):
    from scarce.data.synthetic import make_synthetic

    monkeypatch.chdir(tmp_path)  # the grid's paths are relative: the workers must resolve them here
    (make_synthetic(tmp_path / "bad", 12, size=48, seed=0) / "masks" / "syn_0003.png").unlink()
    path = _grid_file(tmp_path)

    # Ray: the two good runs finish, the bad one is reported per run (exit 1, FAILED.txt)
    assert main(["experiment", str(path), "--backend", "ray", *THREADS]) == 1
    out, err = capsys.readouterr()
    assert "grid t: 3 runs, 0 finished, 3 to do" in out and "report: " not in out
    assert "Ray cluster of 1 node(s), 2 CPUs" in out and "2 at a time" in out
    assert "grid t: 0/3 done, 2 running, 0 failed, ETA ?" in err  # the grid's progress line
    assert "grid t: 2/3 done, 0 running, 1 failed, ETA 0s" in err
    assert "1 run(s) failed" in err
    ray_failed = _failed_lines(err)
    assert len(ray_failed) == 1 and ray_failed[0].startswith(f"runs/{BAD}: DataError") and "syn_0003" in ray_failed[0]
    assert (tmp_path / "runs" / BAD / "FAILED.txt").exists()
    for run in GOOD:
        assert (tmp_path / "runs" / run / "metrics.json").exists()
        assert not (tmp_path / "runs" / run / "FAILED.txt").exists()
    assert (tmp_path / "report" / "results.md").exists()
    mtimes = {run: (tmp_path / "runs" / run / "metrics.json").stat().st_mtime for run in GOOD}

    # second call: the finished runs are skipped (untouched), only the failed one is tried again
    assert main(["experiment", str(path), "--backend", "ray", *THREADS]) == 1
    out, err = capsys.readouterr()
    assert "grid t: 3 runs, 2 finished, 1 to do" in out
    assert "grid t: 2/3 done, 1 running, 0 failed, ETA ?" in err
    assert _failed_lines(err) == ray_failed
    assert all((tmp_path / "runs" / run / "metrics.json").stat().st_mtime == t for run, t in mtimes.items())

    # the local backend on the same grid: the same folders, metrics, report and failure report
    assert main(["experiment", str(path), *THREADS, "--set", "out=local", "--set", "report=local_report"]) == 1
    out, err = capsys.readouterr()
    assert "grid t: 0/3 done, 1 running, 0 failed, ETA ?" in err  # the same progress line, locally
    assert [ln.replace("local/", "runs/", 1) for ln in _failed_lines(err)] == ray_failed
    files = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*")
                                if p.is_file() and not p.name.startswith(".") and "checkpoints" not in p.parts)
    assert files(tmp_path / "runs") == files(tmp_path / "local")
    for run in GOOD:
        assert _metrics(tmp_path / "runs" / run) == _metrics(tmp_path / "local" / run)
        ray_cfg = yaml.safe_load((tmp_path / "runs" / run / "config.yaml").read_text())
        local_cfg = yaml.safe_load((tmp_path / "local" / run / "config.yaml").read_text())
        assert dict(ray_cfg, out=None) == dict(local_cfg, out=None)
    ray_md = (tmp_path / "report" / "results.md").read_text()
    assert ray_md.replace("`runs`", "`local`") == (tmp_path / "local_report" / "results.md").read_text()


@pytest.mark.slow
def test_run_request_no_node_holds_is_refused_before_the_grid_folder_is_made(tmp_path, monkeypatch, capsys,
                                                                             ray_cluster):
    """The test's cluster has no GPU and nothing can join it: a run asking for one never starts."""
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", str(_grid_file(tmp_path)), "--backend", "ray", *THREADS, "--gpus-per-run", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no node of the Ray cluster has 1 CPU(s) and 1 GPU(s)" in err, err
    assert not (tmp_path / "runs").exists()
    assert ray_cluster.is_initialized()  # a Ray initialised by the caller is left as it was
