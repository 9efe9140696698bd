"""evaluate_set / evaluate_sets / validate with a fake model that outputs the GT logits."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from scarce.data.types import SegData
from scarce.evaluation.evaluate import (
    evaluate_set, evaluate_sets, predict_probs, prediction_filename, validate,
)

S = 8


class Oracle(torch.nn.Module):
    """Reads the label map encoded in image channel 0 (label / (K-1)) and returns its logits."""

    def __init__(self, num_classes: int, zero: bool = False) -> None:
        super().__init__()
        self.k = num_classes
        self.zero = zero
        self.w = torch.nn.Parameter(torch.ones(()))  # so the device can be inferred

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lab = (x[:, 0] * (self.k - 1)).round().long()
        if self.zero:
            lab = torch.zeros_like(lab)
        if self.k == 2:
            return (lab.float() * 20 - 10)[:, None] * self.w
        return torch.nn.functional.one_hot(lab, self.k).permute(0, 3, 1, 2).float() * 20 * self.w


def make_data(num_classes: int = 2, stems=None) -> SegData:
    """4 images at S = 8; original masks at 16×16 (nearest ×2), image 1 at 16×24 (×2 / ×3).

    Bilinear upsampling of probabilities rounds region corners (at ×3 a corner pixel gets
    weight 2/3·2/3 < 0.5), so the ×3 image holds a full-width band without corners."""
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(4, S, S, dtype=torch.int64)
    masks[0, 2:6, 2:6] = 1
    masks[1, 0:3, :] = 1
    masks[2, 5:8, 0:4] = num_classes - 1
    masks[2, 1:3, 1:3] = 1
    # image 3: empty GT
    img = torch.rand(4, 3, S, S, generator=g) * 0.1
    img[:, 0] = masks.float() / (num_classes - 1)
    orig = [np.kron(m.numpy(), np.ones((2, 3 if i == 1 else 2), dtype=np.int64)).astype(np.uint8)
            for i, m in enumerate(masks)]
    stems = stems or ["ISIC_0000001", "case2", "ISIC_0000003", "img4"]
    return SegData("id", img, masks, list(stems), num_classes, orig_masks=orig)


def test_predict_probs_shape_and_mode():
    model = Oracle(2).train()
    data = make_data()
    probs = predict_probs(model, data.images, batch_size=3)
    assert probs.shape == (4, 2, S, S)
    assert torch.allclose(probs.sum(1), torch.ones(4, S, S))
    assert model.training  # mode restored


def test_evaluate_set_perfect_binary(tmp_path):
    data = make_data()
    rows = evaluate_set(Oracle(2), data, 2, out_dir=tmp_path, overlays=2, batch_size=3)
    assert [r["stem"] for r in rows] == data.stems
    for r in rows:
        assert r["dice"] == pytest.approx(1.0) and r["jaccard"] == pytest.approx(1.0)
        assert r["jaccard_t"] == pytest.approx(1.0)
    preds = sorted(p.name for p in (tmp_path / "predictions").iterdir())
    assert preds == ["ISIC_0000001_segmentation.png", "ISIC_0000003_segmentation.png", "case2.png", "img4.png"]
    arr = np.asarray(Image.open(tmp_path / "predictions" / "case2.png"))
    assert arr.dtype == np.uint8 and arr.shape == (16, 24)  # original resolution
    assert set(np.unique(arr).tolist()) == {0, 255}
    assert np.array_equal(arr // 255, data.orig_masks[1])
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 2
    ov = np.asarray(Image.open(next((tmp_path / "overlays").glob("*.png"))))
    assert ov.shape == (16, 32, 3)  # [image | overlay] at 16×16
    with open(tmp_path / "per_image.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [t["stem"] for t in table] == data.stems
    assert {"dice", "jaccard", "jaccard_t", "accuracy", "sensitivity", "specificity"} <= set(table[0])
    assert float(table[0]["dice"]) == 1.0
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_evaluate_set_wrong_model_and_no_files(tmp_path):
    rows = evaluate_set(Oracle(2, zero=True), make_data(), 2, out_dir=None)
    # all-background prediction: 0 on the three lesion images, 1 on the empty one
    assert [r["dice"] for r in rows] == [0.0, 0.0, 0.0, 1.0]
    assert not any(tmp_path.iterdir())


def test_evaluate_set_no_predictions_flag(tmp_path):
    evaluate_set(Oracle(2), make_data(), 2, out_dir=tmp_path, save_predictions=False, overlays=0)
    assert (tmp_path / "per_image.csv").is_file()
    assert not (tmp_path / "predictions").exists() and not (tmp_path / "overlays").exists()


def test_evaluate_set_multiclass(tmp_path):
    data = make_data(num_classes=3, stems=["a", "b", "c", "d"])
    rows = evaluate_set(Oracle(3), data, 3, out_dir=tmp_path, overlays=0)
    assert all(r["dice"] == pytest.approx(1.0) for r in rows)
    assert "dice_c1" in rows[0] and "jaccard_c2" in rows[0]
    arr = np.asarray(Image.open(tmp_path / "predictions" / "c.png"))
    assert set(np.unique(arr).tolist()) == {0, 1, 2}  # label ids, not 0/255
    assert np.array_equal(arr, data.orig_masks[2])


def test_evaluate_sets_writes_metrics(tmp_path):
    tests = {"id": make_data(), "ood": make_data(stems=["x1", "x2", "x3", "x4"])}
    res = evaluate_sets(Oracle(2), tests, 2, tmp_path, primary_metric="jaccard", overlays=1)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == res
    assert list(on_disk) == ["id", "ood"]
    for name in ("id", "ood"):
        m = on_disk[name]
        assert m["n"] == 4 and m["dice_mean"] == 1.0 and m["dice_std"] == 0.0
        assert {"jaccard_mean", "jaccard_std", "jaccard_t_mean", "jaccard_t_std"} <= set(m)
        assert (tmp_path / name / "per_image.csv").is_file()
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert len(summary) == 4 and summary[0].startswith("id") and "jaccard 1.000" in summary[0]
    assert summary[0] == "id   jaccard 1.000 ± 0.000  dice 1.000 ± 0.000  jaccard_t 1.000 ± 0.000  (n=4)"
    assert summary[1] == ("  by object size: empty 1.000 (n=1) · <2% — (0) · 2-5% — (0) · 5-15% — (0) · "
                          ">15% 1.000 (3); detection rate 1.000 (4/4 lesions)")
    assert summary[2].startswith("ood  jaccard 1.000")


def test_domain_test_part_folder_has_no_colon(tmp_path):
    """``cvc_clinicdb:test`` (multi-domain protocol) keeps its name in metrics.json but is written
    to ``cvc_clinicdb_test/`` (``:`` is invalid on Windows, ``host:`` to scp), and the report's
    per-image reader finds it there."""
    from scarce.reports.stats import per_image_scores

    res = evaluate_sets(Oracle(2), {"kv": make_data(), "cvc:test": make_data()}, 2, tmp_path / "eval", overlays=0)
    assert list(res) == ["kv", "cvc:test"]
    assert (tmp_path / "eval" / "cvc_test" / "per_image.csv").is_file()
    assert not any(":" in p.name for p in (tmp_path / "eval").rglob("*"))
    scores = per_image_scores(tmp_path, "cvc:test", "dice")
    assert scores is not None and len(scores) == 4 and set(scores.values()) == {1.0}


def test_validate():
    data = make_data()
    assert validate(Oracle(2), data, "dice") == pytest.approx(1.0)
    assert validate(Oracle(2), data, "jaccard") == pytest.approx(1.0)
    assert validate(Oracle(2, zero=True), data, "dice") == pytest.approx(0.25)  # only the empty image
    d3 = make_data(num_classes=3)
    assert validate(Oracle(3), d3, "jaccard_t") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        validate(Oracle(2), data, "auc")


def test_prediction_filename():
    assert prediction_filename("ISIC_0012345") == "ISIC_0012345_segmentation.png"
    assert prediction_filename("case_1") == "case_1.png"
