"""Flip test-time augmentation (``eval.tta: none | flip``).

``predict_probs(..., tta="flip")`` = mean of the class probabilities of the image, its
horizontal flip and its vertical flip, each flipped back. Checked on models whose answer is
known by construction (a flip-equivariant one: TTA changes nothing; a ramp of logits: the
averaged probabilities are computed by hand), binary (sigmoid) and multi-class (softmax), and
that evaluation, validation during training and ``scarce predict`` all use it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import scarce.evaluation.evaluate as ev
from scarce.cli import main
from scarce.config import ConfigError


class Equivariant(nn.Module):
    """1×1 conv then a symmetric 3×3 mean: commutes with every flip of the input."""

    def __init__(self, out: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, out, 1)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


class Ramp(nn.Module):
    """Logits a_k·w + b_k·h + c_k·x[:, 0] per output channel k: not flip-equivariant (the ramps
    do not flip with the input), and different along H and W, so a mixed-up axis shows."""

    def __init__(self, a: list[float], b: list[float], c: list[float]) -> None:
        super().__init__()
        self.a, self.b, self.c = (torch.tensor(v).view(1, -1, 1, 1) for v in (a, b, c))
        self.dummy = nn.Parameter(torch.zeros(()))  # predict_probs reads the device from a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        hh = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
        ww = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
        return self.a * ww + self.b * hh + self.c * x[:, :1]


def _probs(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def _ramp_by_hand(m: Ramp, x: torch.Tensor) -> torch.Tensor:
    """The three views' probabilities written out: identity; left-right flip (the input's column
    w is seen at W-1-w, the ramp not); up-down flip (likewise rows)."""
    h, w = x.shape[-2:]
    hh = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    ww = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    x0 = x[:, :1]
    ident = m.a * ww + m.b * hh + m.c * x0
    lr = m.a * (w - 1 - ww) + m.b * hh + m.c * x0
    ud = m.a * ww + m.b * (h - 1 - hh) + m.c * x0
    return (_probs(ident) + _probs(lr) + _probs(ud)) / 3


def _x(n: int = 3, h: int = 6, w: int = 10) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("out", [1, 3], ids=["binary", "multiclass"])
def test_flip_tta_changes_nothing_on_a_flip_equivariant_model(out):
    model, x = Equivariant(out), _x()
    plain = ev.predict_probs(model, x)
    flip = ev.predict_probs(model, x, tta="flip")
    assert plain.shape == (3, max(2, out), 6, 10)
    torch.testing.assert_close(flip, plain, rtol=0, atol=1e-6)  # fails if a view is not flipped back
    assert not torch.allclose(plain, plain.flip(-1), atol=1e-3)  # the check above is not vacuous


@pytest.mark.parametrize("abc", [([0.7], [-0.4], [2.0]),
                                 ([0.5, -0.3, 0.0], [0.0, 0.6, -0.2], [1.0, -1.0, 0.5])],
                         ids=["binary", "multiclass"])
def test_flip_tta_on_a_ramp_equals_the_hand_computed_mean_of_probabilities(abc):
    model, x = Ramp(*abc), _x()
    flip = ev.predict_probs(model, x, batch_size=2, tta="flip")  # batches of 2 + 1
    torch.testing.assert_close(flip, _ramp_by_hand(model, x), rtol=0, atol=1e-6)
    torch.testing.assert_close(ev.predict_probs(model, x), _probs(model(x)), rtol=0, atol=1e-6)  # none = as before
    # the mean of probabilities, not the probabilities of the mean logit
    h, w = x.shape[-2:]
    hh = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    ww = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    mean_logit = model.a * (w - 1) / 3 + model.a * ww / 3 + model.b * (h - 1) / 3 + model.b * hh / 3 + model.c * x[:, :1]
    assert not torch.allclose(flip, _probs(mean_logit), atol=1e-3)
    assert torch.allclose(flip.sum(1), torch.ones(3, h, w), atol=1e-6)


def test_bad_tta_value_is_one_config_error_with_did_you_mean(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"eval\.tta.*'flp'.*Did you mean 'flip'"):
        ev.predict_probs(Equivariant(1), _x(), tta="flp")
    from scarce.config import load_config
    from scarce.validate import validate_config

    with pytest.raises(ConfigError, match=r"eval\.tta"):
        validate_config(load_config(sets=["eval.tta=flips", "data.size=32"]))
    out = tmp_path / "never"
    assert main(["train", "--set", f"out={out}", "--set", "eval.tta=lfip", "--set", "train.threads=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scarce: error: ") and err.count("\n") == 1 and "eval.tta" in err and "'flip'" in err
    assert not out.exists()


# --------------------------------------------------------------------------- wiring

def _spy(monkeypatch) -> list[str]:
    """Record the ``tta`` of every predict_probs call (evaluation, validation, predict)."""
    seen: list[str] = []
    real = ev.predict_probs

    def spy(model, images, *a, tta="none", **k):
        seen.append(tta)
        return real(model, images, *a, tta=tta, **k)

    monkeypatch.setattr(ev, "predict_probs", spy)
    return seen


def test_validation_and_evaluation_use_eval_tta(tmp_path, monkeypatch):
    from tests.tiny import tiny_config, tiny_run_data

    from scarce.evaluation.evaluate import evaluate_sets, validate
    from scarce.engine.trainer import Trainer

    seen = _spy(monkeypatch)
    cfg = tiny_config(tmp_path, iterations=2)
    cfg.eval.tta = "flip"
    data = tiny_run_data()
    trainer = Trainer(cfg, data, tmp_path / "run")
    trainer.fit()
    trainer.close_logs()
    assert seen and set(seen) == {"flip"}  # every validation scored with TTA
    seen.clear()
    model = trainer.load_best()
    res = evaluate_sets(model, data.tests, 2, None, tta="flip")
    assert seen and set(seen) == {"flip"}
    seen.clear()
    assert evaluate_sets(model, data.tests, 2, None) != res  # TTA changed the scores of this model
    validate(model, data.val)
    assert seen and set(seen) == {"none"}  # the defaults are unchanged


def _fake_run(path: Path, tmp_path: Path, tta: str = "none") -> Path:
    """A finished-run folder (config.yaml + an untrained tiny U-Net as best.pt) for predict/evaluate."""
    from scarce.config import load_config, save_config
    from scarce.models import create_model
    from scarce.utils.io import atomic_torch_save

    cfg = load_config(sets=[f"out={path}", "data.dataset=synthetic", "data.size=32", "data.synthetic_n=20",
                            "data.budget=10", f"data.cache_dir={tmp_path / 'cache'}", "model.width=4",
                            "model.depth=2", "eval.overlays=0", f"eval.tta={tta}"])
    path.mkdir(parents=True)
    save_config(cfg, path / "config.yaml")
    torch.manual_seed(0)
    model = create_model("unet", in_channels=3, num_classes=2, width=4, depth=2)
    atomic_torch_save({"model": model.state_dict()}, path / "checkpoints" / "best.pt")
    return path


def test_predict_uses_eval_tta_from_config_yaml_and_from_set(tmp_path, monkeypatch):
    from scarce.api import load_segmenter, predict_folder

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rgb = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(imgs / "a.png")
    seen = _spy(monkeypatch)
    run = _fake_run(tmp_path / "run", tmp_path)
    predict_folder(run, imgs, tmp_path / "p0", probabilities=True)
    predict_folder(run, imgs, tmp_path / "p1", sets=["eval.tta=flip"], probabilities=True)
    flipped_run = _fake_run(tmp_path / "run_flip", tmp_path, tta="flip")  # stored in config.yaml
    predict_folder(flipped_run, imgs, tmp_path / "p2", probabilities=True)
    assert seen == ["none", "flip", "flip"]
    p0, p1, p2 = (np.asarray(Image.open(tmp_path / d / "probabilities" / "a.png")) for d in ("p0", "p1", "p2"))
    assert np.array_equal(p1, p2) and not np.array_equal(p0, p1)
    # = the library's TTA on the same input, quantised as predict writes it
    x = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)[None]
    ref = ev.predict_probs(load_segmenter(run), x, tta="flip")[0, 1].mul(255).round().to(torch.uint8).numpy()
    assert np.abs(p1.astype(int) - ref.astype(int)).max() <= 1


def test_evaluate_set_eval_tta_rescores_a_finished_run(tmp_path, monkeypatch, capsys):
    import json

    run = _fake_run(tmp_path / "run", tmp_path)
    seen = _spy(monkeypatch)
    assert main(["evaluate", str(run), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert set(seen) == {"none"}
    seen.clear()
    assert main(["evaluate", str(run), "--set", "eval.tta=flip", "--out", str(tmp_path / "tta"), "--json"]) == 0
    flip = json.loads(capsys.readouterr().out)
    assert seen and set(seen) == {"flip"}
    assert flip != plain
    assert main(["evaluate", str(run), "--set", "eval.tta=vflip", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "eval.tta" in err and not (tmp_path / "bad").exists()
