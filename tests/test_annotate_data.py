"""Scribbles a person draws, on the data side: a folder being annotated (images with scribbles
and no mask, masks without scribbles, or no mask at all) trains the weak methods, and every
inconsistent scribble file stops the run with one line naming the file and the fix."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from scarce.cli import main
from scarce.data.scribble_data import holdout_pixels, scribble_split, scribble_split_needed
from scarce.data.scribbles import UNLABELLED, write_scribbles
from scarce.data.types import DataError

TINY = ["--preset", "cpu", "--set", "data.size=32", "--set", "train.iterations=4", "--set", "train.val_every=2",
        "--set", "model.width=4", "--set", "model.depth=2", "--set", "train.batch_size=4", "--set",
        "train.tensorboard=false", "--set", "train.threads=1", "--set", "train.progress=false",
        "--set", "data.budget=all", "--set", "eval.overlays=0", "--set", "eval.save_predictions=false"]


def _annotated(tmp_path: Path, n: int = 15, masked: int = 6, unscribbled: int = 3, masks_dir: bool = True) -> Path:
    """A synthetic folder being annotated: masks for the first ``masked`` images, scribbles for all
    but the first ``unscribbled`` (so images 0..unscribbled-1 have a mask only, the last ones a
    scribble only), no split.csv (held-out test part of the masked images)."""
    from scarce.data.synthetic import make_synthetic

    src = make_synthetic(tmp_path / "src", n, size=32, seed=0)
    write_scribbles(src, 0.5, seed=0)
    d = tmp_path / "d"
    shutil.copytree(src, d)
    for name in ("split.csv", ".scarce"):
        (d / name).unlink(missing_ok=True)
    for name in ("meta.json", ".scarce"):
        (d / "scribbles" / name).unlink()
    stems = sorted(p.stem for p in (d / "images").iterdir())
    for s in stems[masked:]:
        (d / "masks" / f"{s}.png").unlink()
    for s in stems[:unscribbled]:
        (d / "scribbles" / f"{s}.png").unlink()
    if not masks_dir:
        shutil.rmtree(d / "masks")
    return d


def _train(folder: Path, out: Path, method: str = "pce_gd", *extra: str) -> int:
    return main(["train", "--method", method, "--out", str(out), "--set", f"data.dataset={folder}", *TINY, *extra])


def test_weak_run_trains_on_scribbled_images_and_validates_on_masked_ones(tmp_path: Path) -> None:
    d = _annotated(tmp_path)
    assert _train(d, tmp_path / "run") == 0
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    stems = sorted(p.stem for p in (d / "images").iterdir())
    scribbled = set(stems[3:])
    assert set(split["train"]) == scribbled - set(split["test"])  # every scribbled image outside the test part
    assert set(split["val"]) <= set(stems[:3])  # masked images without a scribble
    assert split["val"] and split["test"] and set(split["test"]) <= set(stems[:6])
    assert split["meta"]["labels"] == "scribbles" and split["meta"]["validation"] == "masks"
    assert (split["meta"]["masked"], split["meta"]["scribbled"]) == (6, 12)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(metrics["tests"]) == ["d"] and "note" not in metrics


def test_no_masks_at_all_validates_on_held_out_scribble_pixels(tmp_path: Path, capsys) -> None:
    d = _annotated(tmp_path, masks_dir=False)
    with pytest.warns(UserWarning, match="held-out 20% of the scribbled pixels"):  # the log, before training
        assert _train(d, tmp_path / "run", "grid_tr", "--set", "method.pretrain_iters=1",
                      "--set", "method.epochs_per_stage=1") == 0
    out = capsys.readouterr().out
    assert "note:" in out and "no dice can be reported" in out
    run = tmp_path / "run"
    assert "no dice can be reported" in (run / "eval" / "summary.txt").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tests"] == {} and metrics["validation"] == "scribble_pixels"
    assert math.isfinite(metrics["best_val"])
    split = json.loads((run / "split.json").read_text())
    assert split["val"] == [] and split["test"] == [] and len(split["train"]) == 12
    assert split["meta"]["validation"] == "scribble_pixels"


def test_benchmark_folder_keeps_the_usual_split(tmp_path: Path) -> None:
    """Every image with a mask and a scribble (`scarce data scribbles`): nothing changes."""
    from scarce.data.folder import scan_folder
    from scarce.data.load import split_for_config
    from scarce.config import load_config
    from scarce.data.synthetic import make_synthetic

    d = make_synthetic(tmp_path / "b", 12, size=32, seed=0)
    write_scribbles(d, 1.0, seed=0)
    from scarce.data.registry import get_info

    assert not scribble_split_needed(scan_folder(d), get_info(str(d)))
    cfg = load_config(sets=[f"data.dataset={d}", "data.budget=all"])
    assert split_for_config(cfg.data, 0, scribbles=True).to_json() == split_for_config(cfg.data, 0).to_json()


def test_budget_counts_scribbled_images_and_is_nested(tmp_path: Path) -> None:
    from scarce.data.folder import scan_folder
    from scarce.data.registry import get_info

    d = _annotated(tmp_path)
    index, info = scan_folder(d), get_info(str(d))
    a = scribble_split(info, index, 4, 0)
    b = scribble_split(info, index, 8, 0)
    assert len(a.train) == 4 and len(b.train) == 8 and set(a.train) <= set(b.train)
    assert a.val == b.val
    n = len(set(index.scribbles) - set(a.test))
    with pytest.raises(DataError, match=f"only {n} images .* have a scribble"):
        scribble_split(info, index, 30, 0)


def test_supervised_uses_masked_images_only(tmp_path: Path) -> None:
    d = _annotated(tmp_path)
    with pytest.warns(UserWarning) as caught:
        assert _train(d, tmp_path / "run", "supervised") == 0
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    stems = sorted(p.stem for p in (d / "images").iterdir())
    assert set(split["train"] + split["val"] + split["test"]) == set(stems[:6])
    assert any("9 images of 'd' have no mask (9 of them have a scribble)" in str(w.message) for w in caught)


@pytest.mark.parametrize("case,words", [
    ("size", ["is 32×20 (W×H) but its image is 32×32", "nearest-neighbour"]),
    ("ids", ["holds value(s) [7]", "use class ids 0..1"]),
    ("empty", ["has no scribbled pixel", "delete the file"]),
])
def test_bad_scribble_stops_the_run_with_one_line(tmp_path: Path, capsys, case: str, words: list[str]) -> None:
    from PIL import Image

    d = _annotated(tmp_path)
    stem = sorted(p.stem for p in (d / "scribbles").iterdir())[-1]  # a scribble-only image: it trains
    arr = np.full((32, 32), UNLABELLED, np.uint8)
    arr[5, 5] = 1
    if case == "size":
        arr = arr[:20]
    elif case == "ids":
        arr[6, 6] = 7
    else:
        arr[:] = UNLABELLED
    Image.fromarray(arr).save(d / "scribbles" / f"{stem}.png")
    assert _train(d, tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    line = [x for x in err if x.startswith("scarce: error:")]
    assert len(line) == 1 and f"{stem}.png" in line[0], err
    assert all(w in line[0] for w in words), line[0]
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_scribble_size_follows_exif_orientation(tmp_path: Path) -> None:
    """A phone photo stored 40×20 with 'rotate 90°' is 20×40 for training, so is its scribble."""
    from PIL import Image

    from scarce.data.scribbles import image_size

    img = Image.new("RGB", (40, 20))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "p.jpg", exif=exif)
    assert image_size(tmp_path / "p.jpg") == (40, 20)


def test_data_list_and_show_count_masks_and_scribbles(tmp_path: Path, capsys) -> None:
    d = _annotated(tmp_path)
    assert main(["data", "show", str(d)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["n_images"], shown["masks"], shown["scribbles"]) == (15, 6, 12)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(d, root / "kvasir_seg")
    assert main(["data", "list", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "masks" in out[0] and "scribbles" in out[0]
    row = next(r for r in out if r.startswith("kvasir_seg"))
    assert row.split()[4:7] == ["15", "6", "12"]


def test_holdout_pixels_split_each_image_deterministically() -> None:
    seeds = torch.full((2, 32, 32), UNLABELLED, dtype=torch.int64)
    seeds[0, 2:30, 5] = 1
    seeds[0, 3, 2:30] = 0
    seeds[1, 10, 10] = 1  # one block only: kept for training
    train, held = holdout_pixels(seeds, ["a", "b"], 0.2, 0)
    again = holdout_pixels(seeds, ["a", "b"], 0.2, 0)
    assert torch.equal(train, again[0]) and torch.equal(held, again[1])
    both = (train != UNLABELLED) & (held != UNLABELLED)
    assert not both.any()
    merged = torch.where(train != UNLABELLED, train, held)
    assert torch.equal(merged, seeds)
    assert (held[0] != UNLABELLED).any() and (train[0] != UNLABELLED).any()
    assert not (held[1] != UNLABELLED).any()
    other = holdout_pixels(seeds[:1], ["a"], 0.2, 1)[1]
    assert not torch.equal(other, held[:1])  # another seed holds out other blocks


def test_partial_validation_scores_labelled_pixels_only() -> None:
    from scarce.data.types import SegData
    from scarce.evaluation.evaluate import validate

    class Const(torch.nn.Module):  # predicts foreground on the left half
        def forward(self, x):
            out = torch.full((x.shape[0], 1, 8, 8), -10.0)
            out[..., :4] = 10.0
            return out

    masks = torch.full((1, 8, 8), UNLABELLED, dtype=torch.int64)
    masks[0, 0, 0:2] = 1  # fg predicted fg: 2 hits
    masks[0, 1, 6] = 1  # fg predicted bg: 1 miss
    masks[0, 2, 1] = 0  # bg predicted fg: 1 false positive
    data = SegData("x", torch.zeros(1, 3, 8, 8), masks, ["x"], 2, partial=True)
    assert validate(Const(), data, "dice") == pytest.approx(2 * 2 / (3 + 3))
    assert validate(Const(), data, "jaccard") == pytest.approx(2 / 4)


def test_annotation_minutes_column(tmp_path: Path) -> None:
    from scarce.reports.cost import SECONDS_PER_IMAGE, annotation_minutes, label_kind

    assert label_kind({"name": "supervised"}) == "mask"
    assert label_kind({"name": "grid_tr", "scribbles": "synthetic:0"}) == "click"
    assert label_kind({"name": "pce_gd"}) == "scribble"
    (tmp_path / "split.json").write_text(json.dumps({"train": ["a"] * 8, "val": ["b"] * 2}))
    weak = annotation_minutes(tmp_path, {"method": {"name": "pce_gd", "scribbles": "synthetic:0.5"}})
    assert weak == pytest.approx((8 * SECONDS_PER_IMAGE["scribble"] + 2 * SECONDS_PER_IMAGE["mask"]) / 60)
    full = annotation_minutes(tmp_path, {"method": {"name": "supervised"}}, seconds={"mask": 60})
    assert full == pytest.approx(10.0)
    assert math.isnan(annotation_minutes(tmp_path / "none", {}))
