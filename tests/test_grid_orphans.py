"""A killed `scarce experiment` takes its worker processes with it (they used to keep training
the queued runs on their own), and they first checkpoint the step they were training."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_workers_exit_when_the_grid_process_is_killed(tmp_path):
    grid = {"name": "orphans", "out": str(tmp_path / "runs"), "workers": 2, "threads": 1,
            "base": {"preset": "cpu", "data": {"size": 32, "synthetic_n": 40, "cache_dir": str(tmp_path / "cache")},
                     "model": {"width": 4, "depth": 2},
                     "train": {"iterations": 100000, "val_every": 100000, "batch_size": 4, "tensorboard": False},
                     "eval": {"overlays": 0}},
            "datasets": ["synthetic"], "models": ["unet"], "budgets": [20], "seeds": [0, 1],
            "methods": [{"label": "sup", "method": {"name": "supervised"}}]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    parent = subprocess.Popen([sys.executable, "-m", "scarce.cli", "experiment", str(tmp_path / "grid.yaml"),
                               "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 180
        while len(workers) < 2 and time.time() < deadline:   # both runs training: each holds its lock
            workers = []
            for s in (0, 1):
                lock = tmp_path / "runs" / "synthetic" / "sup-unet" / "b20" / f"s{s}" / ".scarce.lock"
                try:
                    workers.append(int(json.loads(lock.read_text())["pid"]))
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.5)
        assert len(workers) == 2 and parent.pid not in workers, "the grid's workers never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.time() + 30
        alive = list(workers)
        while alive and time.time() < deadline:
            alive = [p for p in alive if _alive(p)]
            time.sleep(0.5)
        assert not alive, f"worker processes {alive} outlived the killed grid process"
        for s in (0, 1):  # no validation (no checkpoint) ever came: the step in flight was checkpointed
            ckpt = tmp_path / "runs" / "synthetic" / "sup-unet" / "b20" / f"s{s}" / "checkpoints" / "last.pt"
            assert torch.load(ckpt, weights_only=True)["step"] > 0
    finally:
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie (exited, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
