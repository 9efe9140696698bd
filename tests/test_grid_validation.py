"""A grid's values are checked as it is loaded, each bad one refused in one line (exit 2) before
anything is written: labels and dataset folders that are not one folder name, values that are
not integers, a run listed twice with different configs; an unreachable Ray cluster is refused
within ``--ray-timeout``; a run listed twice with the same config is one run, listed once."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from scarce import experiments
from scarce.cli import main
from scarce.config import ConfigError

BASE = {"data": {"size": 32, "synthetic_n": 40}, "model": {"width": 4, "depth": 2},
        "train": {"iterations": 2, "val_every": 2, "batch_size": 4, "tensorboard": False, "threads": 1},
        "eval": {"overlays": 0, "save_predictions": False}}
SUP = {"label": "sup", "method": {"name": "supervised"}}


def _grid(tmp_path: Path, **keys) -> dict:
    base = json.loads(json.dumps(BASE))
    base["data"]["cache_dir"] = str(tmp_path / "cache")
    # two levels down: a label climbing out with ../../ would still land inside tmp_path
    g = {"name": "g", "out": str(tmp_path / "a" / "b" / "out"), "report": str(tmp_path / "report"), "workers": 1,
         "base": base, "datasets": ["synthetic"], "methods": [SUP], "budgets": [20], "seeds": [0]}
    g.update(keys)
    return g


def _grid_file(tmp_path: Path, **keys) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid(tmp_path, **keys)))
    return path


@pytest.fixture
def trained(monkeypatch) -> list[str]:
    """Training and reports replaced by a recorder of the run folders trained."""
    runs: list[str] = []

    def fake_run(config, threads):
        out = Path(config["out"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text("{}")
        runs.append(str(out))
        return str(out), "ok", 0.0

    monkeypatch.setattr(experiments, "_run_timed", fake_run)
    monkeypatch.setattr(experiments, "write_grid_report", lambda g: g["report"])
    return runs


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scarce: error: "), err
    return err


# --------------------------------------------------------------------------- folder names

_row = lambda label: {"label": label, "method": {"name": "supervised"}}
BAD_NAMES = [
    ({"methods": [_row("../../esc")]}, "methods[0] label '../../esc'", "it holds '/'"),
    ({"methods": [SUP, _row("a\\b")]}, "methods[1] label 'a\\\\b'", "it holds '\\'"),
    ({"methods": [_row("..")]}, "methods[0] label '..'", "it is '..'"),
    ({"methods": [_row(".")]}, "methods[0] label '.'", "it is '.'"),
    ({"methods": [_row("")]}, "methods[0] label ''", "it is empty"),
    ({"methods": [_row("a\0b")]}, "methods[0] label 'a\\x00b'", "it holds a NUL character"),
    ({"models": ["unet", {"label": "../../esc", "name": "unet"}]}, "models[1] label '../../esc'", "it holds '/'"),
    ({"models": [".."]}, "models[0] label '..'", "it is '..'"),
    ({"datasets": ["synthetic", "sub/synthetic"]}, "datasets[1] 'sub/synthetic'", "it holds '/'"),
    ({"datasets": [{"name": "."}]}, "datasets[0] '.'", "it is '.'"),
    ({"datasets": [""]}, "datasets[0] ''", "it is empty"),
    ({"datasets": ["syn\0thetic"]}, "datasets[0] 'syn\\x00thetic'", "it holds a NUL character"),
]


@pytest.mark.parametrize("keys,row,why", BAD_NAMES)
def test_a_name_that_is_not_one_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys,
                                                                             trained, keys, row, why):
    monkeypatch.chdir(tmp_path)
    path = _grid_file(tmp_path, **keys)
    assert main(["experiment", str(path)]) == 2
    err = _one_error_line(capsys)
    assert f"{path}: {row} cannot name" in err and f"({why}" in err, err
    assert ("give the row a label" if "label" in row else "absolute path") in err  # the fix
    assert trained == [] and _files(tmp_path) == ["grid.yaml"]  # nothing written, in or out of the grid


@pytest.mark.parametrize("keys,row,why", BAD_NAMES[:3])
def test_load_grid_refuses_names_of_a_mapping_grid(tmp_path, keys, row, why):
    with pytest.raises(ConfigError, match="^" + re.escape(f"grid 'g': {row} cannot name a run folder ({why}")):
        experiments.load_grid(_grid(tmp_path, **keys))


# --------------------------------------------------------------------------- integers

@pytest.mark.parametrize("setting,key,value,expected", [
    ("seeds=zero", "'seeds'", "'zero'", "integers >= 0"),
    ("seeds=[0, true]", "'seeds'", "True", "integers >= 0"),
    ("budgets=[ten]", "'budgets'", "'ten'", "integers >= 0"),
    ("budgets=[1.5]", "'budgets'", "1.5", "integers >= 0"),
    ("workers=two", "'workers'", "'two'", "an integer >= 1"),
    ("workers=true", "'workers'", "True", "an integer >= 1"),
    ("threads=x", "'threads'", "'x'", "an integer >= 0"),
    ("gpus=y", "'gpus'", "'y'", "a number >= 0"),
    ("datasets=[{name: synthetic, seeds: [x]}]", "'datasets[0].seeds'", "'x'", "integers >= 0"),
    ("datasets=[{name: synthetic, budgets: [ten]}]", "'datasets[0].budgets'", "'ten'", "integers >= 0"),
])
def test_a_value_that_is_not_an_integer_is_one_line_naming_key_value_and_what_is_expected(
        tmp_path, monkeypatch, capsys, trained, setting, key, value, expected):
    monkeypatch.chdir(tmp_path)
    path = _grid_file(tmp_path)
    assert main(["experiment", str(path), "--set", setting]) == 2
    err = _one_error_line(capsys)
    assert f"{path}: grid key {key} must" in err and expected in err and err.rstrip().endswith(f"got {value}"), err
    assert trained == [] and _files(tmp_path) == ["grid.yaml"]
    # `scarce status` reads the same grid: the same line
    assert main(["status", str(path), "--set", setting]) == 2
    assert _one_error_line(capsys) == err


# --------------------------------------------------------------------------- duplicate runs

def test_a_run_listed_twice_is_listed_and_trained_once_and_the_log_says_so(tmp_path, monkeypatch, capsys, trained):
    monkeypatch.chdir(tmp_path)
    path = _grid_file(tmp_path, methods=[SUP, dict(SUP)], seeds=[0, 0, 1])
    assert main(["experiment", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    run = lambda s: str(Path(tmp_path / "a" / "b" / "out" / "synthetic" / "sup-unet" / "b20" / f"s{s}"))
    assert [ln.strip() for ln in out if "would run" in ln] == [f"would run {run(0)}", f"would run {run(1)}"]
    assert [ln for ln in out if "duplicate" in ln] == [
        "grid g: 4 duplicate run(s) dropped (the grid lists their run folders more than once with the same config; "
        "each trains once)"]
    assert "grid g: 2 runs, 0 finished, 2 to do" in out

    log: list[str] = []
    (res,) = experiments.run_grids([path], progress=False, log=log.append)
    assert trained == [run(0), run(1)]
    assert (res["total"], res["ran"], res["failed"]) == (2, 2, [])
    assert sum("duplicate" in ln for ln in log) == 1 and "grid g: 2 runs, 0 finished, 2 to do" in log
    # the status listing counts each run once
    assert main(["status", str(path), "--all"]) == 0
    status = capsys.readouterr().out
    assert "2 runs — 2 done" in status and status.count("sup-unet/b20/s0") == 1


def test_a_run_listed_twice_with_different_configs_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    other = dict(SUP, train={"iterations": 4})
    g = _grid(tmp_path, methods=[SUP, other])
    with pytest.raises(ConfigError, match=r"listed twice by grid 'g' with different configs \(train.iterations differ"):
        experiments.expand_grid(g)
    path = _grid_file(tmp_path, methods=[SUP, other])
    assert main(["status", str(path)]) == 2  # `scarce status` too: one folder cannot hold both runs
    assert "another label" in _one_error_line(capsys)


# --------------------------------------------------------------------------- Ray connection

def test_an_unreachable_ray_address_is_refused_within_the_timeout(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray", reason="the Ray backend is optional: pip install -e \".[ray]\"")
    monkeypatch.chdir(tmp_path)
    path = _grid_file(tmp_path)
    t = time.monotonic()
    assert main(["experiment", str(path), "--backend", "ray", "--address", "127.0.0.1:1", "--ray-timeout", "2"]) == 2
    assert time.monotonic() - t < 15
    err = _one_error_line(capsys)
    assert "cannot reach the Ray cluster at '127.0.0.1:1'" in err and "check the address" in err, err
    assert _files(tmp_path) == ["grid.yaml"]
    import ray

    assert not ray.is_initialized()
    with pytest.raises(ConfigError, match=r"'127\.0\.0\.1:1'"):  # the library's keyword
        experiments.run_grid(path, backend="ray", address="127.0.0.1:1", ray_timeout=2, progress=False)


def test_a_ray_cluster_that_does_not_answer_is_refused_after_the_timeout(tmp_path, monkeypatch, capsys):
    """The address takes connections but Ray never finishes connecting (``ray.init`` blocks):
    refused after --ray-timeout seconds, naming the address and the option."""
    ray = pytest.importorskip("ray", reason="the Ray backend is optional: pip install -e \".[ray]\"")
    monkeypatch.chdir(tmp_path)
    release = threading.Event()
    monkeypatch.setattr(ray, "init", lambda *a, **kw: release.wait(30))
    with socket.socket() as srv:
        srv.bind(("0.0.0.0", 0))  # Ray connects to this machine's own address for 127.0.0.1
        srv.listen(4)
        address = f"127.0.0.1:{srv.getsockname()[1]}"
        t = time.monotonic()
        try:
            code = main(["experiment", str(_grid_file(tmp_path)), "--backend", "ray", "--address", address,
                         "--ray-timeout", "1"])
        finally:
            release.set()  # the connecting thread ends
    assert code == 2 and 1 <= time.monotonic() - t < 10
    err = _one_error_line(capsys)
    assert f"the Ray cluster at {address!r}" in err and "did not answer within 1s" in err and "--ray-timeout" in err
    assert _files(tmp_path) == ["grid.yaml"]


@pytest.mark.slow
def test_real_ray_blocked_on_a_silent_address_returns_within_the_timeout(tmp_path):
    """The same with Ray itself (it retries a GCS that does not answer for ever): in a process of
    its own, since the thread left blocked in Ray ends only with it."""
    pytest.importorskip("ray", reason="the Ray backend is optional: pip install -e \".[ray]\"")
    path = _grid_file(tmp_path)
    with socket.socket() as srv:
        srv.bind(("0.0.0.0", 0))  # Ray connects to this machine's own address for 127.0.0.1
        srv.listen(4)
        address = f"127.0.0.1:{srv.getsockname()[1]}"
        t = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "scarce.cli", "experiment", str(path), "--backend", "ray",
                            "--address", address, "--ray-timeout", "2"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=60)
    assert p.returncode == 2 and time.monotonic() - t < 30
    assert p.stderr.count("\n") == 1 and "did not answer within 2s" in p.stderr, p.stderr


@pytest.mark.parametrize("extra,needle", [
    (["--ray-timeout", "5"], "--backend ray"),
    (["--backend", "ray", "--ray-timeout", "0"], "--ray-timeout must be a number of seconds > 0"),
    (["--backend", "ray", "--ray-timeout", "nan"], "--ray-timeout must be a number of seconds > 0"),
])
def test_ray_timeout_option_errors_are_one_line(tmp_path, monkeypatch, capsys, extra, needle):
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", str(_grid_file(tmp_path)), *extra]) == 2
    assert needle in _one_error_line(capsys)
    assert _files(tmp_path) == ["grid.yaml"]


# --------------------------------------------------------------------------- report folder

def test_a_foreign_report_folder_is_refused_unless_the_grid_writes_no_report(tmp_path, monkeypatch, capsys, trained):
    """The report folder is checked before anything runs, but only when a report will be written:
    ``--no-report`` leaves the folder alone, so it may hold the user's own files (a table script)."""
    monkeypatch.chdir(tmp_path)
    path = _grid_file(tmp_path)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "make_table.py").write_text("print('mine')\n")
    assert main(["experiment", str(path)]) == 2
    err = _one_error_line(capsys)
    assert "report" in err and "make_table.py" in err and "not made by `scarce report`" in err, err
    assert trained == []
    assert main(["experiment", str(path), "--no-report"]) == 0
    assert len(trained) == 1
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["make_table.py"]
    assert (tmp_path / "report" / "make_table.py").read_text() == "print('mine')\n"
