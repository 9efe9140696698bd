"""The one output policy (scarce/utils/paths.py): no command ever changes a file it did not make.

Property-based (hypothesis): random trees of user files, a dataset, a run folder and symlinks to
them; every cheap writing command aimed at a random destination in that tree, with and without
``--overwrite``. Whatever it does, every file that was there before keeps its bytes, and a
refusal is one line, exit 2, with nothing written. Plus one test per data-loss case that used
to slip through (train into a user's folder, predict over a dataset's images, split over a
dataset's split.csv, evaluate into a dataset's masks/, predict/evaluate into a run's folders).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from scarce.cli import main  # noqa: E402
from tests.test_output_safety import fake_run  # noqa: E402


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every regular file under ``root`` (symlinks not followed)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _images(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A tree built once and copied per example: a user's folder, a dataset, a finished-looking
    run (untrained tiny U-Net, log.csv, eval/), a second dataset, input images."""
    from scarce.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("policy")
    tree = root / "tree"
    (tree / "user" / "sub").mkdir(parents=True)
    (tree / "user" / "notes.txt").write_text("mine")
    (tree / "user" / "sub" / "paper.tex").write_text("three years")
    make_synthetic(tree / "ds", 8, size=24, seed=0)
    make_synthetic(tree / "ds2", 4, size=24, seed=1)
    cache = root / "cache"  # outside the tree: the synthetic data the fake run evaluates on
    run = fake_run(tree / "run", cache)
    (run / "log.csv").write_text("step,loss\n1,0.5\n")
    (run / "eval").mkdir()
    (run / "eval" / "summary.txt").write_text("synthetic dice 0.5\n")
    _images(tree / "imgs")
    # the synthetic data the run evaluates on is generated once, outside the tree
    assert main(["evaluate", str(run), "--out", str(root / "warm"), "--set", "eval.overlays=0"]) == 0
    return tree


@contextlib.contextmanager
def _copy(template: Path):
    base = Path(tempfile.mkdtemp(prefix="policy-"))
    try:
        tree = base / "tree"
        shutil.copytree(template, tree, symlinks=True)
        for name, target in (("link_ds", "ds"), ("link_run", "run"), ("link_user", "user")):
            (tree / name).symlink_to(tree / target, target_is_directory=True)
        yield tree
    finally:
        shutil.rmtree(base, ignore_errors=True)


PLACES = ["user", "user/sub", "ds", "ds/images", "ds/masks", "ds2", "ds2/images", "run", "run/checkpoints",
          "run/eval", "imgs", "link_ds", "link_ds/masks", "link_run/eval", "link_user", "."]


def _command(name: str, tree: Path, dest: Path) -> list[str]:
    run, ds = tree / "run", tree / "ds"
    return {
        "predict": ["predict", str(run), str(tree / "imgs"), str(dest)],
        "predict_ds2": ["predict", str(run), str(tree / "ds" / "images"), str(dest)],
        "evaluate": ["evaluate", str(run), "--out", str(dest), "--set", "eval.overlays=0",
                     "--set", "eval.save_predictions=false"],
        "split": ["data", "split", str(ds), "--budget", "4", "--out", str(dest / "split.csv")],
        "split_json": ["data", "split", str(ds), "--budget", "4", "--out", str(dest / "split.json")],
        "synthetic": ["data", "synthetic", str(dest), "--n", "2", "--size", "16"],
        "export_nnunet": ["data", "export-nnunet", str(ds), str(dest), "--id", "1"],
        "scribbles": ["data", "scribbles", str(dest), "--length", "0.5"],
        "export": ["export", str(run.parent), "--out", str(dest)],
        "report": ["report", str(tree / "run"), "--out", str(dest)],
    }[name]


COMMANDS = ["predict", "predict_ds2", "evaluate", "split", "split_json", "synthetic", "export_nnunet", "scribbles",
            "export", "report"]


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(command=st.sampled_from(COMMANDS), place=st.sampled_from(PLACES), new=st.booleans(),
       overwrite=st.booleans())
def test_no_command_changes_a_file_it_did_not_make(template, capsys, command, place, new, overwrite):
    with _copy(template) as tree:
        dest = (tree / place / "new") if new else (tree / place)
        before = _snapshot(tree)
        argv = _command(command, tree, dest) + (["--overwrite"] if overwrite else [])
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err
        after = _snapshot(tree)
        changed = sorted(k for k, h in before.items() if after.get(k) != h)
        assert not changed, f"{argv} changed/removed {changed[:5]}"
        assert code in (0, 2), (argv, code, err)
        if code == 2:
            assert err.startswith("scarce: error:") and err.count("\n") == 1, err
            assert set(after) == set(before), f"{argv} refused but wrote {sorted(set(after) - set(before))[:5]}"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["predict", "evaluate", "synthetic", "export_nnunet", "split_json"]))
def test_overwrite_replaces_only_the_commands_own_files(template, capsys, command):
    with _copy(template) as tree:
        dest = tree / "out"
        assert main(_command(command, tree, dest)) == 0
        own = dest / "Dataset001_ds" if command == "export_nnunet" else dest  # the folder the command made
        (own / "mine.txt").write_text("added by the user")  # beside the command's own output
        before = _snapshot(tree)
        if command == "evaluate":  # an evaluation folder is rewritten in place, like a report
            assert main(_command(command, tree, dest)) == 0
        else:  # its own folder: --overwrite needed
            assert main(_command(command, tree, dest)) == 2
            assert "--overwrite" in capsys.readouterr().err
        code = main(_command(command, tree, dest) + ["--overwrite"])
        err = capsys.readouterr().err
        after = _snapshot(tree)
        outside = sorted(k for k, h in before.items() if not k.startswith("out/") and after.get(k) != h)
        assert not outside and (own / "mine.txt").read_text() == "added by the user"
        if command == "export_nnunet":  # replaced as a whole only while it holds nothing else
            assert code == 2 and "mine.txt" in err
        else:
            assert code == 0, err


# ------------------------------------------------------------------------------ the cases one by one

TRAIN = ["data.dataset=synthetic", "data.size=16", "data.synthetic_n=20", "data.budget=10", "model.width=4",
         "model.depth=2", "train.iterations=1", "train.val_every=1", "train.batch_size=2", "train.progress=false",
         "train.tensorboard=false", "train.threads=1", "eval.overlays=0", "eval.save_predictions=false"]


def _train(out: Path, tmp_path: Path) -> list[str]:
    sets = [*TRAIN, f"data.cache_dir={tmp_path / 'cache'}", f"out={out}"]
    return ["train", "--preset", "cpu", *[a for s in sets for a in ("--set", s)]]


def test_train_never_into_a_users_folder(tmp_path, capsys):
    user = tmp_path / "u"
    (user / "eval").mkdir(parents=True)
    for name in ("log.csv", "split.json", "environment.json", "eval/summary.txt"):
        (user / name).write_text("mine")
    before = _snapshot(user)
    assert main(_train(user, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "run folder" in err and "not made by `scarce train`" in err and err.count("\n") == 1
    assert _snapshot(user) == before


def test_train_never_into_a_dataset(tmp_path, synthetic_folder, capsys):
    before = _snapshot(synthetic_folder)
    for out in (synthetic_folder, synthetic_folder / "images", synthetic_folder / "masks",
                synthetic_folder / "new_run"):
        assert main(_train(out, tmp_path)) == 2
        err = capsys.readouterr().err
        assert "scarce never writes into a dataset" in err and err.count("\n") == 1
    assert _snapshot(synthetic_folder) == before


def test_train_resumes_its_own_folder(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(_train(out, tmp_path)) == 0
    assert (out / ".scarce").is_file() and "scarce train" in (out / ".scarce").read_text()
    assert main(_train(out, tmp_path) + ["--resume"]) == 0  # a finished run returns its results


def test_predict_never_over_a_datasets_images_nor_into_a_run(tmp_path, synthetic_folder, capsys):
    from scarce.data.synthetic import make_synthetic

    run = fake_run(tmp_path / "run", tmp_path)
    other = make_synthetic(tmp_path / "B", 4, size=24, seed=2)
    (run / "eval").mkdir()
    (run / "eval" / "summary.txt").write_text("x")
    before = {p: _snapshot(p) for p in (other, run)}
    for dest in (other / "images", other / "masks", run / "checkpoints", run / "eval"):
        assert main(["predict", str(run), str(synthetic_folder / "images"), str(dest), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("dataset" in err or "not made by `scarce predict`" in err), err
    assert {p: _snapshot(p) for p in (other, run)} == before


def test_split_and_evaluate_never_into_a_dataset(tmp_path, synthetic_folder, capsys):
    before = _snapshot(synthetic_folder)
    assert main(["data", "split", str(synthetic_folder), "--budget", "4", "--out",
                 str(synthetic_folder / "split.csv"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "lies inside the dataset" in err and err.count("\n") == 1
    run = fake_run(tmp_path / "run", tmp_path)
    assert main(["evaluate", str(run), "--out", str(synthetic_folder / "masks"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "scarce never writes into a dataset" in err and err.count("\n") == 1
    assert _snapshot(synthetic_folder) == before


def test_nothing_inside_another_commands_folder(tmp_path, synthetic_folder, capsys):
    run = fake_run(tmp_path / "run", tmp_path)
    imgs = _images(tmp_path / "imgs")
    preds = tmp_path / "preds"
    assert main(["predict", str(run), str(imgs), str(preds)]) == 0
    assert main(["data", "synthetic", str(preds / "data"), "--n", "2", "--size", "16"]) == 2
    err = capsys.readouterr().err
    assert "which `scarce predict` made" in err and err.count("\n") == 1
    assert main(["predict", str(run), str(imgs), str(run / "predictions")]) == 0  # a run is a container


def test_policy_unit_rules(tmp_path):
    from scarce.errors import ConfigError
    from scarce.utils.paths import check_output_folder, read_marker, staged_output, write_marker

    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "masks").mkdir()
    with pytest.raises(ConfigError, match="lies inside the dataset"):
        check_output_folder(ds / "x" / "y", command="scarce a")
    (ds / "scribbles").mkdir()
    assert check_output_folder(ds / "scribbles", command="scarce a", dataset_child="scribbles")
    only_csv = tmp_path / "csv"
    only_csv.mkdir()
    (only_csv / "split.csv").write_text("stem,split\n")
    with pytest.raises(ConfigError, match="is the dataset"):
        check_output_folder(only_csv, command="scarce a")
    made = write_marker(tmp_path / "made", "scarce a")
    (made / "f.txt").write_text("x")
    assert read_marker(made) == "scarce a"
    with pytest.raises(ConfigError, match="pass --overwrite"):
        check_output_folder(made, command="scarce a")
    assert check_output_folder(made, command="scarce a", overwrite=True)
    with pytest.raises(ConfigError, match="was made by `scarce a`"):
        check_output_folder(made, command="scarce b", overwrite=True)
    with pytest.raises(ConfigError, match="which `scarce a` made"):
        check_output_folder(made / "sub", command="scarce b")
    (made / ".scarce").write_text("not json")
    assert read_marker(made) == "an unknown command"
    with staged_output(tmp_path / "staged", "scarce c") as tmp:
        (tmp / "a.txt").write_text("1")
    assert read_marker(tmp_path / "staged") == "scarce c"
