"""The planner (``scarce plan``, ``train.budget_minutes``): choices for fake fingerprints and fake
step costs computed by hand, the plan written into and kept by a run's config.yaml, and the
one-line errors."""
from __future__ import annotations

import json

import pytest
import yaml

from scarce.cli import main
from scarce.config import load_config, to_dict
from scarce.engine.planner import PLANNED_KEYS, adopt_saved_plan, apply_plan, fixed_keys, needs_plan, plan

C = 0.25 / (8 * 128 ** 2)


def step(p: int, b: int) -> float:
    """Fake cost: 0.25 s for a batch of 8 at 128 px, linear in pixels × batch."""
    return C * b * p * p


def fp(share: float, median: float = 1.0, p10: float | None = None, p90: float | None = None, side: int = 512,
       classes: dict | None = None) -> dict:
    return {"height": {"median": side}, "width": {"median": side},
            "aspect": {"median": median, "p10": p10 or median, "p90": p90 or median},
            "object_fraction": {"p10": share},
            "classes": classes or {"foreground": {"p10": share}}}


def test_small_objects_need_a_larger_resolution():
    big = 10_000  # minutes: whole images always fit
    # √0.25·S ≥ 32 → S ≥ 64 → the minimum 128; √0.04 → 160; √0.01 → 320
    assert plan(fp(0.25), big, step).values()["data.size"] == 128
    assert plan(fp(0.04), big, step).values()["data.size"] == 160
    p = plan(fp(0.01), big, step)
    v = p.values()
    assert (v["data.size"], v["data.patch"], v["train.batch_size"], v["train.iterations"]) == (320, 0, 8, 4000)
    assert list(v) == list(PLANNED_KEYS) and all(c.reason for c in p.choices)
    assert "S >= 320" in p.choices[1].reason and "capped at 4000" in p.choices[4].reason
    # the smallest of several classes decides; never above the images' median side (300 → 288)
    two = fp(0.2, classes={"disc": {"p10": 0.2}, "cup": {"p10": 0.01}})
    assert plan(two, big, step).values()["data.size"] == 320
    assert plan(fp(0.001, side=300), big, step).values()["data.size"] == 288


def test_aspect_pad_when_ratios_vary_or_far_from_square():
    assert plan(fp(0.04), 10_000, step).values()["data.aspect"] == "squash"
    assert plan(fp(0.04, 1.0, 0.9, 1.2), 10_000, step).values()["data.aspect"] == "pad"  # 1.2/0.9 > 1.15
    p = plan(fp(0.04, 4 / 3), 10_000, step)
    # padded, the short side is 3/4 of S: √0.04·S·√0.75 ≥ 32 → S ≥ 184.8 → 192
    assert p.values()["data.aspect"] == "pad" and p.values()["data.size"] == 192


def test_tight_budgets_shrink_patch_then_batch_then_size():
    # S = 320; 10 min × 0.8 = 480 s, 400 iterations → ≤ 1.2 s/step: batch 8 at p ≤ 280 → 256 (1.0 s)
    v = plan(fp(0.01), 10, step).values()
    assert (v["data.size"], v["data.patch"], v["train.batch_size"], v["train.iterations"]) == (320, 256, 8, 480)
    assert v["train.val_every"] == 30
    # 5 min: ≤ 0.6 s → 192 px (0.5625 s) → 426 → 420 iterations
    v = plan(fp(0.01), 5, step).values()
    assert (v["data.patch"], v["train.batch_size"], v["train.iterations"]) == (192, 8, 420)
    # 2 min: ≤ 0.24 s: batch 8 needs p ≤ 125 < the smallest patch 160; batch 4 at 160 (0.195 s) → 491 → 490
    v = plan(fp(0.01), 2, step).values()
    assert (v["data.size"], v["data.patch"], v["train.batch_size"], v["train.iterations"]) == (320, 160, 4, 490)
    # 0.5 min (24 s, ≤ 0.06 s): nothing fits even at S = 128 (patch 96, batch 4: 0.0703 s) → 341 → 340
    p = plan(fp(0.01), 0.5, step)
    v = p.values()
    assert (v["data.size"], v["data.patch"], v["train.batch_size"], v["train.iterations"]) == (128, 96, 4, 340)
    assert "lowered to 128" in p.choices[1].reason and "fewer than 400" in p.choices[4].reason
    for budget in (0.5, 2, 5, 10, 10_000):
        v = plan(fp(0.01), budget, step).values()
        assert v["data.size"] % 32 == 0 and v["data.patch"] % 32 == 0


def test_fixed_keys_are_kept_and_planned_around():
    p = plan(fp(0.01), 10, step, fixed={"data.size": 256, "train.iterations": 1000})
    v = p.values()
    # 1000 iterations in 480 s → ≤ 0.48 s: batch 8 at p ≤ 177 → 160 (0.39 s)
    assert (v["data.size"], v["data.patch"], v["train.iterations"]) == (256, 160, 1000)
    assert p.choices[1].reason == "set by you" and p.choices[4].reason.startswith("set by you")
    assert plan(fp(0.01), 10, step, patches=False).values()["data.patch"] == 0
    with pytest.raises(ValueError, match="budget"):
        plan(fp(0.01), 0, step)


def test_plan_in_the_config_is_kept(tmp_path):
    cfg = load_config(sets=["train.budget_minutes=5", "data.size=192"])
    assert needs_plan(cfg) and set(fixed_keys(cfg)) == {"data.size"}  # differs from the preset's 128
    assert set(fixed_keys(cfg, given=["train.batch_size"])) == {"data.size", "train.batch_size"}
    planned = apply_plan(cfg, plan(fp(0.01), 5, step, fixed=fixed_keys(cfg)))
    assert not needs_plan(planned) and planned.data.size == 192 and set(planned.train.planned) == set(PLANNED_KEYS)
    saved = to_dict(planned)
    assert adopt_saved_plan(to_dict(cfg), saved) == saved  # a resume takes the saved plan
    other = to_dict(load_config(sets=["train.budget_minutes=6", "data.size=192"]))
    assert adopt_saved_plan(other, saved) == other  # another budget: planned anew
    assert adopt_saved_plan(saved, saved) == saved


FAST = ["data.dataset=synthetic", "data.synthetic_n=40", "data.budget=20", "model.width=4", "model.depth=2",
        "train.progress=false", "train.tensorboard=false", "eval.overlays=0", "eval.save_predictions=false",
        "train.threads=1"]


def test_train_plans_once_and_resume_keeps_it(tmp_path, capsys):
    sets = [x for s in [*FAST, f"data.cache_dir={tmp_path / 'c'}", f"out={tmp_path / 'run'}",
                        "train.budget_minutes=0.5", "train.iterations=4", "train.val_every=2"] for x in ("--set", s)]
    assert main(["train", *sets]) == 0
    err = capsys.readouterr().err
    assert "data.size=" in err and "set by you" in err
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert set(saved["train"]["planned"]) == set(PLANNED_KEYS) and saved["train"]["iterations"] == 4
    assert saved["data"]["size"] % 32 == 0
    assert main(["train", *sets, "--resume"]) == 0  # the same command: the saved plan, no new one
    assert "using the plan saved" in capsys.readouterr().err


def test_cli_plan_and_errors(tmp_path, capsys):
    assert main(["plan", "synthetic", "--budget-minutes", "0.2", "--json",
                 *[x for s in [*FAST[1:], f"data.cache_dir={tmp_path / 'c'}"] for x in ("--set", s)]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["key"] for c in out["choices"]] == list(PLANNED_KEYS) and "--set data.size=" in out["sets"]
    for args in (["plan", str(tmp_path / "missing")], ["plan", "nope"],
                 ["train", "--set", "train.budget_minutes=-1", "--set", f"out={tmp_path / 'r'}"]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("scarce: error:"), err
    assert not (tmp_path / "r").exists()


def test_fixed_patch_and_iterations_over_budget():
    v = plan(fp(0.01), 0.5, step, fixed={"data.patch": 0}).values()
    assert v["data.patch"] == 0 and v["data.size"] == 128  # whole images: S comes down instead
    p = plan(fp(0.01), 0.5, step, fixed={"data.patch": 192, "train.iterations": 5000})
    assert p.values()["data.size"] == 192 and p.values()["data.patch"] == 192  # S never below the patch
    assert "more than the budget" in p.choices[4].reason


def test_grid_runs_keep_their_plan(tmp_path):
    from scarce import experiments

    base = {"data": {"size": 32, "synthetic_n": 40, "cache_dir": str(tmp_path / "cache")},
            "model": {"width": 4, "depth": 2},
            "train": {"iterations": 2, "val_every": 2, "batch_size": 4, "tensorboard": False, "budget_minutes": 0.2},
            "eval": {"overlays": 0, "save_predictions": False}}
    g = {"name": "g", "out": str(tmp_path / "g"), "workers": 1, "base": base, "datasets": ["synthetic"],
         "budgets": [20], "seeds": [0], "methods": [{"label": "sup", "method": {"name": "supervised"}}]}
    res = experiments.run_grids([g], report=False, progress=False, log=lambda *_: None)
    assert res[0]["failed"] == [] and res[0]["ran"] == 1
    saved = tmp_path / "g" / "synthetic" / "sup-unet" / "b20" / "s0" / "config.yaml"
    planned = yaml.safe_load(saved.read_text())["train"]["planned"]
    assert planned["data.size"] == "set by you" and set(planned) == set(PLANNED_KEYS)
    # the same grid again: the finished run is this grid's run (its plan adopted, not stripped)
    res = experiments.run_grids([g], report=False, progress=False, log=lambda *_: None)
    assert res[0]["ran"] == 0 and yaml.safe_load(saved.read_text())["train"]["planned"] == planned
