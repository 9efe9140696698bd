"""Errors a user meets: `scarce report` duplicates / missing folder, corrupt checkpoints,
file-system errors (read-only, disk full, a path under a file) as one line + exit 2 with nothing
partial, evaluate's writability check before any work, plain progress lines when the output is
not a terminal, and a readable end-of-run summary instead of raw JSON (``--json`` keeps it).

Read-only folders are simulated by patching ``os.open``/``os.mkdir`` (tests may run as root,
for whom ``chmod`` changes nothing), disk full by a write that stops half-way with ENOSPC."""
import errno
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from scarce.cli import main

FAST = ["data.size=32", "data.synthetic_n=40", "data.budget=20", "model.width=4", "model.depth=2",
        "train.iterations=6", "train.val_every=3", "train.batch_size=4", "train.progress=false",
        "train.tensorboard=false", "eval.overlays=1", "train.threads=1"]


def _sets(*pairs: str) -> list[str]:
    return [x for p in pairs for x in ("--set", p)]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("scarce: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def fake_run(tmp_path):
    """A finished run folder without training: config.yaml, a freshly initialised best.pt and a
    metrics.json (what `scarce train` leaves), on the built-in synthetic data."""
    from scarce.config import load_config, save_config
    from scarce.models import create_model

    run = tmp_path / "run"
    cfg = load_config(sets=[*FAST, f"data.cache_dir={tmp_path / 'cache'}", f"out={run}"])
    (run / "checkpoints").mkdir(parents=True)
    save_config(cfg, run / "config.yaml")
    torch.manual_seed(0)
    m = cfg.model
    model = create_model(m.name, in_channels=3, num_classes=2, width=m.width, depth=m.depth, backbone=m.backbone,
                         output_stride=m.output_stride)
    torch.save({"model": model.state_dict(), "step": 6, "score": 0.5}, run / "checkpoints" / "best.pt")
    tests = {"synthetic": {"dice_mean": 0.812, "dice_std": 0.05, "jaccard_mean": 0.7, "jaccard_std": 0.04, "n": 8},
             "synthetic_ood": {"dice_mean": 0.61, "dice_std": 0.1, "jaccard_mean": 0.5, "jaccard_std": 0.1, "n": 20}}
    (run / "metrics.json").write_text(json.dumps({"run_dir": str(run), "best_val": 0.5, "best_step": 6, "steps": 6,
                                                  "stopped_early": False, "params": 1, "tests": tests}))
    return run


def _images(tmp_path) -> Path:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)).save(imgs / "a.png")
    return imgs


def _read_only(monkeypatch, root: Path, code: int = errno.EROFS) -> None:
    """Make everything under ``root`` refuse new files/folders like a read-only mount (EROFS) or a
    folder without write permission (EACCES), whoever runs the test."""
    root_s = os.path.abspath(root)
    real_open, real_mkdir = os.open, os.mkdir

    def under(path) -> bool:
        p = os.path.abspath(os.fspath(path))
        return p == root_s or p.startswith(root_s + os.sep)

    def fake_open(path, flags, *a, **kw):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_open(path, flags, *a, **kw)

    def fake_mkdir(path, *a, **kw):
        if under(path):
            if os.path.isdir(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(path))
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_mkdir(path, *a, **kw)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


# ---------------------------------------------------------------------------------- report (item 5)
def _write_run(folder: Path, seed: int, dice: float, budget: int = 40) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"label": "supervised-unet", "data": {"dataset": "kvasir_seg", "budget": budget}, "train": {"seed": seed},
           "model": {"name": "unet"}, "method": {"name": "supervised"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "metrics.json").write_text(json.dumps({"tests": {"kvasir_seg": {"dice_mean": dice, "n": 5}}}))


def test_report_refuses_several_runs_for_one_cell_and_newest_keeps_the_newest(tmp_path, capsys):
    runs = tmp_path / "runs"
    _write_run(runs / "grid" / "s0", 0, 0.70)
    _write_run(runs / "copy_of_s0", 0, 0.90)  # same dataset/row/budget/seed: which one is in the table?
    _write_run(runs / "grid" / "s1", 1, 0.72)
    old = time.time() - 3600
    os.utime(runs / "grid" / "s0" / "metrics.json", (old, old))
    assert main(["report", str(runs), str(tmp_path / "rep")]) == 2
    line = _one_line_error(capsys)
    assert (runs / "grid" / "s0").as_posix() in line and (runs / "copy_of_s0").as_posix() in line
    assert "--newest" in line and "seed 0" in line
    assert not (tmp_path / "rep").exists()
    # --newest: the copy (newer metrics.json) is kept, the other named in a warning
    with pytest.warns(UserWarning, match="--newest") as w:
        assert main(["report", str(runs), str(tmp_path / "rep"), "--newest"]) == 0
    msg = str(w[0].message)
    assert (runs / "grid" / "s0").as_posix() in msg and "copy_of_s0" not in msg
    csv = (tmp_path / "rep" / "results.csv").read_text().splitlines()
    assert csv[1].split(",")[4] == "2"  # n_seeds: s1 + the newest s0
    table = (tmp_path / "rep" / "kvasir_seg_dice.md").read_text()
    assert "0.810 ± 0.127" in table  # mean/std of 0.90 (newest s0) and 0.72 (s1), not 0.70


def test_grid_report_is_not_tripped_by_its_own_runs(tmp_path):
    from scarce.experiments import write_grid_report

    for b in (20, 40):
        for s in (0, 1):
            _write_run(tmp_path / "g" / "kvasir_seg" / "supervised-unet" / f"b{b}" / f"s{s}", s, 0.7 + 0.01 * s, b)
    report = write_grid_report({"out": str(tmp_path / "g")})  # a guard: each cell has exactly its own run
    rows = (Path(report) / "results.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all(r.split(",")[4] == "2" for r in rows)  # n_seeds per budget


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_report_missing_or_empty_runs_folder_is_an_error(tmp_path, capsys, kind):
    runs = tmp_path / "runs"
    if kind == "empty":
        (runs / "unfinished").mkdir(parents=True)
        (runs / "unfinished" / "config.yaml").write_text("data: {dataset: kvasir_seg}\n")  # no metrics.json
    assert main(["report", str(runs), str(tmp_path / "rep")]) == 2
    line = _one_line_error(capsys)
    assert str(runs) in line and ("does not exist" if kind == "missing" else "no finished run") in line
    assert not (tmp_path / "rep").exists()


# ------------------------------------------------------------------------ checkpoints (item 6)
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_truncated_best_checkpoint_is_one_line(tmp_path, fake_run, capsys, command):
    best = fake_run / "checkpoints" / "best.pt"
    _truncate(best)
    args = [str(fake_run), "--out", str(tmp_path / "ev")] if command == "evaluate" else \
        [str(fake_run), str(_images(tmp_path)), str(tmp_path / "pred")]
    assert main([command, *args]) == 2
    line = _one_line_error(capsys)
    assert str(best) in line and "corrupt or truncated" in line and "--resume" in line and "retrain" in line
    assert not (tmp_path / "pred").exists() and not (tmp_path / "ev" / "metrics.json").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_empty_or_garbage_best_checkpoint_is_one_line(tmp_path, fake_run, capsys, content):
    (fake_run / "checkpoints" / "best.pt").write_bytes(content)
    assert main(["predict", str(fake_run), str(_images(tmp_path)), str(tmp_path / "pred")]) == 2
    assert "corrupt or truncated" in _one_line_error(capsys)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_payload_is_still_refused_in_one_line(tmp_path, fake_run, capsys):
    marker = tmp_path / "pwned"
    best = fake_run / "checkpoints" / "best.pt"
    torch.save({"model": _Evil(marker)}, best)
    assert main(["predict", str(fake_run), str(_images(tmp_path)), str(tmp_path / "pred")]) == 2
    line = _one_line_error(capsys)
    assert str(best) in line and "pickled" in line and "weights_only" in line
    assert not marker.exists()


def test_truncated_last_checkpoint_on_resume_names_file_and_fix(tmp_path):
    from scarce.engine.trainer import Trainer
    from scarce.utils.io import CheckpointError
    from tests.tiny import tiny_config, tiny_run_data

    cfg = tiny_config(tmp_path, {"name": "supervised"}, iterations=6)
    Trainer(cfg, tiny_run_data(), tmp_path).fit(max_steps=2)
    last = tmp_path / "checkpoints" / "last.pt"
    _truncate(last)
    with pytest.raises(CheckpointError) as e:
        Trainer(tiny_config(tmp_path, {"name": "supervised"}, iterations=6), tiny_run_data(), tmp_path).fit(resume=True)
    msg = str(e.value)
    assert "\n" not in msg and str(last) in msg and "--resume" in msg and "new --out" in msg


def test_corrupt_gan_cache_warns_and_is_retrained(tmp_path):
    from scarce.methods.gan.pretrain import load_gan_cache

    path = tmp_path / "pix2pix-x-s0-search-abc.pt"
    torch.save({"generator": {"w": torch.zeros(3)}, "discriminator": {}}, path)
    assert set(load_gan_cache(path, torch.device("cpu"), ("generator", "discriminator"))) == {"generator", "discriminator"}
    _truncate(path)
    with pytest.warns(UserWarning, match="retraining the GAN") as w:
        assert load_gan_cache(path, torch.device("cpu"), ("generator", "discriminator")) is None
    assert str(path) in str(w[0].message)


# ------------------------------------------------------------------------ file system (item 8)
@pytest.mark.parametrize("code,text", [(errno.EROFS, "read-only"), (errno.EACCES, "permission")])
def test_unwritable_out_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, code, text):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro, code)
    args = ["train", *_sets(*FAST, f"data.cache_dir={tmp_path / 'cache'}"), "--out", str(ro / "run")]
    assert main(args) == 2
    line = _one_line_error(capsys)
    assert str(ro / "run") in line and os.strerror(code) in line and text in line.lower() and "choose" in line
    assert _files(ro) == []


def test_out_under_a_regular_file_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("my thesis\n")
    run = tmp_path / "notes.txt" / "run"
    assert main(["train", *_sets(*FAST, f"data.cache_dir={tmp_path / 'cache'}"), "--out", str(run)]) == 2
    line = _one_line_error(capsys)
    assert str(run) in line and "notes.txt', which is a file" in line
    assert (tmp_path / "notes.txt").read_text() == "my thesis\n"


def _disk_full_on(monkeypatch, name_part: str) -> None:
    """The write of a file whose (temporary) name contains ``name_part`` stops half-way: ENOSPC."""
    real = Path.write_bytes

    def write_bytes(self, data):
        if name_part in self.name:
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_disk_full_names_the_file_and_leaves_nothing_partial(tmp_path, monkeypatch):
    from scarce.utils.io import atomic_write_text

    target = tmp_path / "d" / "metrics.json"
    atomic_write_text(target, "old complete content\n")
    _disk_full_on(monkeypatch, "metrics.json")
    with pytest.raises(OSError) as e:
        atomic_write_text(target, "new content " * 1000)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert target.read_text() == "old complete content\n" and _files(tmp_path / "d") == ["metrics.json"]


def test_disk_full_in_the_cli_is_one_line_exit_2(tmp_path, fake_run, capsys, monkeypatch):
    _disk_full_on(monkeypatch, "metrics.json")
    out = tmp_path / "ev"
    assert main(["evaluate", str(fake_run), "--out", str(out), "--set", "eval.save_predictions=false"]) == 2
    line = _one_line_error(capsys)
    assert str(out / "metrics.json") in line and os.strerror(errno.ENOSPC) in line and "disk space" in line
    assert not (out / "metrics.json").exists() and not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_evaluate_on_a_read_only_run_says_out_before_computing(tmp_path, fake_run, capsys, monkeypatch):
    import scarce.api
    import scarce.data.load

    def never(*a, **kw):
        raise AssertionError("computed before checking that the results can be written")

    monkeypatch.setattr(scarce.data.load, "load_test_sets", never)
    monkeypatch.setattr(scarce.api, "load_segmenter", never)
    _read_only(monkeypatch, fake_run)
    assert main(["evaluate", str(fake_run)]) == 2
    line = _one_line_error(capsys)
    assert str(fake_run / "eval") in line and "--out DIR" in line and os.strerror(errno.EROFS) in line


# --------------------------------------------------------------------------------- output (item 9)
def test_plain_progress_lines_when_not_a_terminal(tmp_path, capsys):
    from scarce.engine.trainer import Trainer
    from tests.tiny import tiny_config, tiny_run_data

    def trainer():
        return Trainer(tiny_config(tmp_path, {"name": "supervised"}, iterations=6, progress="true"),
                       tiny_run_data(), tmp_path)

    trainer().fit(max_steps=2)  # "killed" after the step-2 validation
    first = capsys.readouterr().err.splitlines()
    assert [ln.split("  ")[0] for ln in first] == ["step 2/6"]
    assert "val dice" in first[0] and "loss" in first[0] and "best" in first[0]
    trainer().fit(resume=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"resuming {tmp_path} from step 2/6"
    assert [ln.split("  ")[0] for ln in lines[1:3]] == ["step 4/6", "step 6/6"]  # one line per validation
    assert lines[3].startswith(f"trained {tmp_path}: 6 steps, best val dice") and len(lines) == 4


def test_train_and_evaluate_print_a_summary_and_json_on_request(tmp_path, fake_run, capsys):
    args = ["train", *_sets(*FAST, f"data.cache_dir={tmp_path / 'cache'}"), "--out", str(fake_run), "--resume"]
    assert main(args) == 0  # finished run: results only, nothing retrained
    out = capsys.readouterr().out
    assert "synthetic      dice 0.812 ± 0.050  jaccard 0.700 ± 0.040  (n=8)" in out
    assert "synthetic_ood  dice 0.610 ± 0.100" in out and str(fake_run) in out
    assert "{" not in out and len(out.splitlines()) <= 5
    assert main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["tests"]["synthetic"]["dice_mean"] == 0.812 and res["run_dir"] == str(fake_run)
    # evaluate: the same summary (from the fresh metrics), or JSON
    ev = tmp_path / "ev"
    assert main(["evaluate", str(fake_run), "--out", str(ev), "--set", "eval.save_predictions=false"]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "(n=8)" in out and "(n=20)" in out and str(ev) in out
    assert main(["evaluate", str(fake_run), "--out", str(tmp_path / "ev2"), "--set", "eval.save_predictions=false",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["synthetic"]["n"] == 8 and res == json.loads((tmp_path / "ev2" / "metrics.json").read_text())
