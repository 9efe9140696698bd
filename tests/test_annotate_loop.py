"""The annotation loop end to end: the strokes of ``scarce data scribbles`` are replayed through the
page in a real browser (selenium, one-pixel brush, one stroke per run of pixels), what the page
saved equals the synthesised files pixel for pixel, so a weak run trained on the page's scribbles
is the run trained on the synthesised ones (same weights); then ``annotate --run`` shows that
run's prediction over each image, worst (least confident) first."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from scarce.cli import main
from tests.annotate_browser import (browser, console_errors, keys, open_page, read_png, row_runs,  # noqa: F401
                                    served, strokes, wait_for, wait_ready)

pytestmark = pytest.mark.slow  # two tiny trainings and a browser: about 30 s

RUN = ["--method", "pce_gd", "--preset", "cpu", "--set", "data.size=32", "--set", "train.iterations=4",
       "--set", "train.val_every=2", "--set", "model.width=4", "--set", "model.depth=2", "--set", "train.batch_size=4",
       "--set", "train.tensorboard=false", "--set", "train.threads=1", "--set", "train.progress=false",
       "--set", "data.budget=all", "--set", "eval.overlays=0", "--set", "eval.save_predictions=false"]


def _train(folder: Path, out: Path) -> dict:
    assert main(["train", "--out", str(out), "--set", f"data.dataset={folder}", *RUN]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_replayed_scribbles_train_the_same_run_and_come_back_as_predictions(browser, tmp_path: Path) -> None:  # noqa: F811
    from scarce.data.scribbles import write_scribbles
    from scarce.data.synthetic import make_synthetic

    made = make_synthetic(tmp_path / "made", 8, size=32, seed=0)
    write_scribbles(made, 0.5, seed=0)
    drawn = tmp_path / "drawn"
    shutil.copytree(made, drawn, ignore=shutil.ignore_patterns("scribbles"))
    stems = sorted(p.stem for p in (made / "images").iterdir())
    with served(drawn) as url:
        open_page(browser, url)
        keys(browser, "[[[[[")  # a one-pixel brush draws exactly the pixels of each run
        for i, stem in enumerate(stems):
            assert wait_ready(browser, stem) == stem  # the page starts at the first image not annotated
            ref = read_png(made / "scribbles" / f"{stem}.png")
            for c in sorted(set(np.unique(ref).tolist()) - {255}):
                keys(browser, str(c))
                strokes(browser, row_runs(ref, c))
            keys(browser, "n" if i + 1 < len(stems) else "s")  # moving on saves
        wait_for(browser, f"return document.getElementById('progress').textContent === "
                          f"'{len(stems)} of {len(stems)} annotated';", what="all saved")
        assert console_errors(browser) == []
    for stem in stems:
        assert np.array_equal(read_png(drawn / "scribbles" / f"{stem}.png"), read_png(made / "scribbles" / f"{stem}.png")), stem

    ref, got = _train(made, tmp_path / "run_made"), _train(drawn, tmp_path / "run_drawn")
    assert got["best_val"] == ref["best_val"]
    assert list(got["tests"].values()) == list(ref["tests"].values())  # sets named after their folders
    wa = torch.load(tmp_path / "run_made" / "checkpoints" / "best.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "run_drawn" / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    import scarce

    model = scarce.load(tmp_path / "run_drawn")
    with served(drawn, run=str(tmp_path / "run_drawn")) as url:  # --order worst is the default with --run
        browser.get(url)
        first = wait_ready(browser)
        order = browser.execute_script("return scarceAnnotate.state.items.map(function(i){ return i.stem; });")
        conf = {s: float(model.predict_proba(next((drawn / "images").glob(f"{s}.*"))).max(axis=0).mean())
                for s in stems}
        assert order == sorted(stems, key=lambda s: (conf[s], s)) and first == order[0]
        shown = browser.execute_script("return Array.from(scarceAnnotate.state.pred);")
        expected = model.predict(next((drawn / "images").glob(f"{first}.*")))
        assert np.array_equal(np.array(shown, np.uint8).reshape(expected.shape), expected)
        assert browser.find_element("id", "predc").is_displayed()
        keys(browser, "o")  # the overlay hides and shows again
        assert not browser.find_element("id", "predc").is_displayed()
        assert console_errors(browser) == []
