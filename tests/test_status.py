"""`scarce status`: each run state read from the folder alone (no lock taken, nothing written)."""
import json
import os
import socket
from pathlib import Path

import pytest
import yaml

from scarce.cli import main
from scarce.status import find_runs, run_status, summarize
from scarce.utils.lock import LOCK_NAME, lock_folder


def _run(root: Path, name: str, *, iterations: int = 800, dataset: str = "isic2017") -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"data": {"dataset": dataset}, "train": {"iterations": iterations}}))
    return d


def _log(d: Path, step: int, sec: float) -> None:
    (d / "log.csv").write_text(f"step,loss,lr,sec_per_step,val_dice\n{step - 50},0.5,0.001,9.0,0.7\n"
                               f"{step},0.4,0.001,{sec},0.8\n")


def _ckpt(d: Path) -> None:
    (d / "checkpoints").mkdir()
    (d / "checkpoints" / "last.pt").write_bytes(b"x")


def test_every_state_from_the_folder(tmp_path):
    done = _run(tmp_path, "done")
    (done / "metrics.json").write_text(json.dumps({"best_val": 0.9, "tests": {
        "isic2017": {"dice_mean": 0.8, "jaccard_mean": 0.6641}, "ph2": {"jaccard_mean": 0.7}}}))
    failed = _run(tmp_path, "failed")
    (failed / "FAILED.txt").write_text("DataError: mask missing: syn_0003.png\n\nTraceback ...")
    stopped = _run(tmp_path, "stopped")
    _ckpt(stopped)
    _log(stopped, 300, 0.5)
    new = _run(tmp_path, "new")
    dead = _run(tmp_path, "dead_holder")  # a lock left by a killed process: not running
    _ckpt(dead)
    (dead / LOCK_NAME).write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": socket.gethostname()}))
    live = _run(tmp_path, "live", iterations=300)
    _ckpt(live)
    _log(live, 100, 0.5)
    with lock_folder(live):  # this process holds it
        got = {p.name: run_status(p) for p in find_runs(tmp_path)}
        assert got["live"].state == "running" and f"pid {os.getpid()}" in got["live"].detail
        assert (got["live"].step, got["live"].iterations, got["live"].eta) == (100, 300, 100.0)
    assert got["done"].state == "done" and got["done"].score == "isic2017 jaccard 0.664"  # the dataset's metric
    assert got["failed"].state == "failed" and got["failed"].detail == "DataError: mask missing: syn_0003.png"
    assert got["stopped"].state == "stopped" and got["stopped"].step == 300 and got["stopped"].eta is None
    assert got["new"].state == "new" and got["dead_holder"].state == "stopped"
    assert summarize(list(got.values())) == {"done": 1, "running": 1, "stopped": 2, "failed": 1, "new": 1}
    assert run_status(tmp_path / "absent", iterations=50).state == "new"
    assert run_status(live).state == "stopped"  # released: no live holder any more


def test_status_reads_only(tmp_path):
    live = _run(tmp_path, "live")
    _ckpt(live)
    files = lambda: sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file())
    with lock_folder(live):
        before = files()
        assert run_status(live).state == "running"
        assert files() == before  # the lock file untouched, nothing written


def test_cli_on_a_grid_and_a_runs_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = {"name": "g", "out": "runs", "base": {"preset": "cpu", "data": {"size": 32}},
            "datasets": ["synthetic"], "budgets": [20], "seeds": [0, 1, 2],
            "methods": [{"label": "sup", "method": {"name": "supervised"}}]}
    Path("g.yaml").write_text(yaml.safe_dump(grid))
    s0 = _run(tmp_path / "runs" / "synthetic" / "sup-unet" / "b20", "s0", dataset="synthetic")
    (s0 / "metrics.json").write_text(json.dumps({"tests": {"synthetic": {"dice_mean": 0.91}}}))
    s1 = _run(tmp_path / "runs" / "synthetic" / "sup-unet" / "b20", "s1", dataset="synthetic")
    (s1 / "FAILED.txt").write_text("RuntimeError: boom\n")
    assert main(["status", "g.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "grid g (runs): 3 runs — 1 done, 1 failed, 1 new"
    assert out[1] == "  grid process: none running"
    assert out[2:] == ["  failed   synthetic/sup-unet/b20/s1  RuntimeError: boom"]
    assert main(["status", "runs", "--all"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "runs: 2 runs — 1 done, 1 failed"
    assert "  done     synthetic/sup-unet/b20/s0  synthetic dice 0.910" in out
    assert main(["status", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nowhere' is not a folder of runs" in err


@pytest.mark.parametrize("bad", ["step\nnot-a-number\n", "", "\x00\x01"])
def test_a_damaged_log_does_not_break_status(tmp_path, bad):
    d = _run(tmp_path, "r")
    _ckpt(d)
    (d / "log.csv").write_text(bad)
    st = run_status(d)
    assert st.state == "stopped" and st.step is None


def test_time_left_from_finished_runs_of_the_same_kind(tmp_path):
    from scarce.status import format_status, remaining_eta

    kind = tmp_path / "kvasir_seg" / "sup-unet" / "b40"
    for seed, secs in (("s0", (1.0, 2.0)), ("s1", (1.0, 4.0)), ("s2", (3.0, 4.0))):
        d = _run(kind, seed, iterations=100)
        (d / "log.csv").write_text(f"step,loss,sec_per_step\n50,0.5,{secs[0]}\n100,0.4,{secs[1]}\n")
        (d / "metrics.json").write_text("{}")
    # done: 50·1+50·2 = 150, 50·1+50·4 = 250, 50·3+50·4 = 350 → median 250 per run of this kind
    _run(kind, "s3", iterations=100)                      # new: 250
    stopped = _run(kind, "s4", iterations=100)            # stopped: counted in full, 250
    _ckpt(stopped)
    live = _run(kind, "s5", iterations=100)               # running: its own ETA (100 − 60) × 2 = 80
    _ckpt(live)
    (live / "log.csv").write_text("step,loss,sec_per_step\n60,0.5,2.0\n")
    _run(tmp_path / "isic2017" / "sup-unet" / "b40", "s0")  # a kind with nothing finished: unknown
    with lock_folder(live):
        statuses = [run_status(p) for p in find_runs(tmp_path)]
        assert remaining_eta(statuses, 1) == (250 + 250 + 80, 1)
        assert remaining_eta(statuses, 2) == ((250 + 250 + 80) / 2, 1)
        head = format_status("runs", statuses, workers=2)[0]
    assert head == ("runs: 7 runs — 3 done, 1 running, 1 stopped, 2 new; ≈ 4m50s of training left at 2 at a time "
                    "(+ 1 run(s) of kinds not finished yet)")
    assert remaining_eta([s for s in statuses if s.state == "done"], 2) == (None, 0)
    # one run left cannot go faster with more workers
    one = [s for s in statuses if s.state == "done" or s.run_dir.name == "s3"]
    assert remaining_eta(one, 4) == (250, 0)


def test_logged_train_seconds_sums_steps_times_seconds_per_step(tmp_path):
    """Hand-computed: 20 steps at 0.5 s, then 30 more at 1.0 s = 40 s; a row without a number or
    no log: None (result tables then show nothing rather than a wrong time)."""
    from scarce.status import logged_train_seconds

    log = tmp_path / "log.csv"
    log.write_text("step,loss,sec_per_step,val_dice\n20,1.0,0.5,\n50,0.8,1.0,0.7\n")
    assert logged_train_seconds(log) == 40.0
    log.write_text("step,loss,sec_per_step\n20,1.0,\n")
    assert logged_train_seconds(log) is None
    assert logged_train_seconds(tmp_path / "missing.csv") is None
