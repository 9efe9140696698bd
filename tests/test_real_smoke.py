"""Real-data smoke test: a tiny supervised run on isic2017 with its OOD set ph2, end to end
(split, training, best checkpoint, evaluation at original resolution). Skips without data."""
import json

import pytest

from scarce.api import train_run
from scarce.config import load_config

pytestmark = pytest.mark.realdata


def test_isic2017_train_and_evaluate_id_and_ood(tmp_path, real_data_root):
    cfg = load_config(sets=[
        f"data.root={real_data_root}", "data.dataset=isic2017", "data.size=32", "data.budget=10",
        "data.test_sets=[isic2017, ph2]", "model.width=4", "model.depth=2", "train.iterations=4",
        "train.val_every=2", "train.batch_size=4", "train.progress=false", "train.tensorboard=false",
        "eval.overlays=1", f"out={tmp_path / 'run'}",
    ])
    res = train_run(cfg)
    assert res["tests"]["isic2017"]["n"] == 150 and res["tests"]["ph2"]["n"] == 200
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert (len(split["train"]), len(split["val"])) == (8, 2)
    assert not set(split["train"]) & set(split["test"])
    preds = list((tmp_path / "run" / "eval" / "isic2017" / "predictions").glob("ISIC_*_segmentation.png"))
    assert len(preds) == 150
