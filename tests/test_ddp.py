"""The trainer under torchrun with 2 gloo processes on CPU: ranks stay in sync, rank 0 does I/O."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = r'''
import os, sys, torch
sys.path.insert(0, {root!r})
from tests.tiny import tiny_config, tiny_run_data
from scarce.engine.trainer import Trainer
out = {out!r}
cfg = tiny_config(out, {{"name": "supervised", "augment": "flip"}}, iterations=4)
t = Trainer(cfg, tiny_run_data(), out)
t.fit()
rank = int(os.environ["RANK"])
torch.save({{k: v for k, v in t.method.segmenter.state_dict().items() if "running" not in k and "num_batches" not in k}},
           os.path.join(out, f"rank{{rank}}.pt"))
'''


@pytest.mark.slow
def test_ddp_two_gloo_processes(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT.format(root=root, out=str(tmp_path / "run")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", str(script)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "run" / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "run" / "rank1.pt", weights_only=True)
    for k in w0:
        assert torch.allclose(w0[k], w1[k], atol=1e-6), f"ranks diverged at {k}"
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4 and len(state["method_gens"]) == 2
