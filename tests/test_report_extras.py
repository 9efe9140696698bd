"""Optional report sections (trimap, scribble-length / λ axes, searched architecture) from
fabricated run folders, the old-config compatibility of the grid check, and ``eval.trimap_widths``
end to end in a tiny ``train_run`` on synthetic data."""
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from scarce.reports.extras import line_names, small_png_copy
from scarce.reports.report import write_report
from scarce.reports.tables import collect_runs, trimap_results, trimap_widths

torch.set_num_threads(1)


def _run(folder, cfg, tests, best_val=0.5):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "metrics.json").write_text(json.dumps({"best_val": best_val, "tests": tests}))


def _weak_runs(root):
    """kvasir_seg: full supervision + pce_gd/grid_tr at lengths 0 and 1, 2 seeds, trimap at 2/8 px."""
    rows = {"full": (None, 0.90), "pce_gd-l0": ("synthetic:0", 0.50), "pce_gd-l1": ("synthetic:1", 0.70),
            "grid_tr-l0": ("synthetic:0", 0.55), "grid_tr-l1": ("synthetic:1", 0.80)}
    for label, (spec, v) in rows.items():
        for seed in (0, 1):
            method = {"name": "supervised" if spec is None else label.split("-")[0]}
            if spec:
                method["scribbles"] = spec
            cfg = {"label": f"{label}-unet", "data": {"dataset": "kvasir_seg", "budget": 40},
                   "train": {"seed": seed}, "model": {"name": "unet"}, "method": method}
            tests = {t: {"dice_mean": v + 0.01 * seed - d, "n": 5,
                         "trimap": {"2": v - 0.2 + 0.01 * seed - d, "8": v - 0.1 - d}}
                     for t, d in (("kvasir_seg", 0.0), ("cvc_clinicdb", 0.1))}
            _run(root / "kvasir_seg" / f"{label}-unet" / "b40" / f"s{seed}", cfg, tests)


def _e2eaug_runs(root):
    cells = ["down.0.cell", "up.0.cell"]
    ops = ["conv421", "conv622", "conv823"]
    for seed in (0, 1):
        d = root / "montgomery" / "e2eaug-unet" / "b40" / f"s{seed}"
        cfg = {"label": "e2eaug-unet", "data": {"dataset": "montgomery", "budget": 40}, "train": {"seed": seed},
               "model": {"name": "unet"}, "method": {"name": "e2eaug"}}
        _run(d, cfg, {"montgomery": {"dice_mean": 0.9, "n": 4}})
        w = [[[1 / 3] * 3, [1 / 3] * 3], [[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], [[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]]
        rec = {"cells": cells, "ops": {c: ops for c in cells}, "steps": [0, 2, 4], "alpha": w, "weights": w,
               "derived": {"down.0.cell": "conv421", "up.0.cell": "conv823" if seed == 0 else "conv622"},
               "derived_history": [{"step": 2, "derived": {"down.0.cell": "conv421", "up.0.cell": "conv823"}}]}
        (d / "architecture.json").write_text(json.dumps(rec))
        noise = (np.random.default_rng(seed).random((1100, 540, 3)) * 255).astype(np.uint8)  # ~1.8 MB PNG
        Image.fromarray(noise).save(d / "gallery.png")
    # a supervised row without architecture.json in the same dataset
    _run(root / "montgomery" / "supervised-unet" / "b40" / "s0",
         {"label": "supervised-unet", "data": {"dataset": "montgomery", "budget": 40}, "train": {"seed": 0},
          "model": {"name": "unet"}, "method": {"name": "supervised"}}, {"montgomery": {"dice_mean": 0.8, "n": 4}})


def test_collect_trimap_and_axes(tmp_path):
    _weak_runs(tmp_path)
    df = collect_runs(tmp_path)
    assert trimap_widths(df) == [2, 8]
    res = trimap_results(df, "kvasir_seg", "kvasir_seg")
    assert sorted(res) == ["full-unet", "grid_tr-l0-unet", "grid_tr-l1-unet", "pce_gd-l0-unet", "pce_gd-l1-unet"]
    assert res["grid_tr-l1-unet"][2] == pytest.approx([0.60, 0.61])
    lengths = df.groupby("row")["scribble_length"].first()
    assert lengths["pce_gd-l1-unet"] == 1.0 and lengths["grid_tr-l0-unet"] == 0.0 and np.isnan(lengths["full-unet"])
    names = line_names(df[df["dataset"] == "kvasir_seg"], "scribble_length")
    assert names["grid_tr-l0-unet"] == names["grid_tr-l1-unet"] == "grid_tr-unet"
    assert names["pce_gd-l1-unet"] == "pce_gd-unet" and names["full-unet"] == "full-unet"


def test_axis_lines_come_from_configs_not_labels(tmp_path):
    """Lines group runs whose configs differ only in the axis field, whatever their labels say:
    labels without any -l<L>/-lam<λ> token still form one line; equal labels with another
    config difference (another potts_weight) do not."""
    from scarce.reports.tables import run_axes

    base = {"data": {"dataset": "kvasir_seg", "budget": 40}, "train": {"seed": 0}, "model": {"name": "unet"}}
    for i, (label, lam, w) in enumerate([("alpha", 0.1, 1.0), ("beta", 1.0, 1.0), ("gamma", 0.1, 3.0)]):
        cfg = {**base, "label": label, "method": {"name": "grid_tr", "scribbles": "synthetic:0.5", "lam": lam, "potts_weight": w}}
        _run(tmp_path / label / "s0", cfg, {"kvasir_seg": {"dice_mean": 0.5 + i / 10, "n": 4}})
    df = collect_runs(tmp_path)
    assert sorted(df["method_lam"]) == [0.1, 0.1, 1.0]
    names = line_names(df, "method_lam")
    assert names["alpha"] == names["beta"] != names["gamma"]
    assert run_axes({**base, "method": {"name": "e2eaug"}})["method_lam"] != run_axes(  # default λ: no value
        {**base, "method": {"name": "e2eaug", "lam": 1.0}})["method_lam"]


def test_trimap_panels_per_scribble_length(tmp_path):
    from scarce.reports.extras import _trimap_panels

    _weak_runs(tmp_path)
    df = collect_runs(tmp_path)
    sub = df[df["dataset"] == "kvasir_seg"]
    refs, panels = _trimap_panels(sub, trimap_results(df, "kvasir_seg", "kvasir_seg"))
    assert list(refs) == ["full-unet"]
    assert list(panels) == ["L = 0", "L = 1"]
    assert sorted(panels["L = 1"]) == ["grid_tr-unet", "pce_gd-unet"]
    assert panels["L = 1"]["grid_tr-unet"][2] == pytest.approx([0.60, 0.61])
    # one length only: no panels, every row on one axis
    one = sub[sub["scribble_length"].isna() | (sub["scribble_length"] == 1.0)]
    refs1, panels1 = _trimap_panels(one, {"full-unet": {2: [0.7]}, "grid_tr-l1-unet": {2: [0.6]}})
    assert panels1 is None and list(refs1) == ["full-unet", "grid_tr-l1-unet"]


def test_report_weak_sections(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "report"
    _weak_runs(runs)
    text = write_report(runs, out, metric="dice").read_text()
    for f in ("kvasir_seg_kvasir_seg_trimap.png", "kvasir_seg_cvc_clinicdb_trimap.png",
              "kvasir_seg_dice_by_scribble_length.png"):
        assert (out / f).is_file() and f"({f})" in text, f
    for f in ("kvasir_seg_kvasir_seg_trimap.md", "kvasir_seg_dice_by_scribble_length.md",
              "kvasir_seg_dice_by_scribble_length.csv"):
        assert (out / f).is_file(), f
    assert "trimap accuracy" in text and "by scribble length" in text
    trimap = (out / "kvasir_seg_kvasir_seg_trimap.md").read_text()
    assert "| full-unet | **0.705 ± 0.007** | **0.800 ± 0.000** |" in trimap  # mean ± sample std over 2 seeds
    by_len = (out / "kvasir_seg_dice_by_scribble_length.md").read_text()
    assert by_len.splitlines()[0] == "| row | kvasir_seg | cvc_clinicdb |"
    assert "validation" not in by_len  # a data condition, not a hyperparameter: nothing to choose
    # best line per value in bold (L=0: grid_tr 0.555 vs pce_gd 0.505)
    assert "| grid_tr-unet @ L=0 | **0.555 ± 0.007** | **0.455 ± 0.007** |" in by_len
    assert "| pce_gd-unet @ L=0 | 0.505 ± 0.007 | 0.405 ± 0.007 |" in by_len
    assert by_len.splitlines()[2] == "| full-unet | 0.905 ± 0.007 | 0.805 ± 0.007 |"  # reference, once, never bold
    assert by_len.count("full-unet") == 1
    # main results.csv keeps its format (no trimap / axis columns)
    header = (out / "results.csv").read_text().splitlines()[0]
    assert "trimap" not in header and "scribble_length" not in header


def test_report_lambda_axis(tmp_path):
    # validation prefers λ = 0.3, the test set λ = 0.03: the table shows both, bold per column
    for lam, v, val in ((0.0, 0.6, 0.5), (0.03, 0.7, 0.55), (0.3, 0.65, 0.6)):
        for seed in (0, 1, 2):
            cfg = {"label": f"grid_tr-lam{lam:g}-unet", "data": {"dataset": "kvasir_seg", "budget": 40},
                   "train": {"seed": seed}, "model": {"name": "unet"},
                   "method": {"name": "grid_tr", "scribbles": "synthetic:0.5", "lam": lam}}
            _run(tmp_path / "runs" / f"lam{lam:g}" / f"s{seed}", cfg, {"kvasir_seg": {"dice_mean": v, "n": 3}},
                 best_val=val + 0.01 * seed)
        cfg = {"label": "pce_gd-unet", "data": {"dataset": "kvasir_seg", "budget": 40}, "train": {"seed": 0},
               "model": {"name": "unet"}, "method": {"name": "pce_gd", "scribbles": "synthetic:0.5"}}
        _run(tmp_path / "runs" / "pce" / "s0", cfg, {"kvasir_seg": {"dice_mean": 0.5, "n": 3}}, best_val=0.45)
    text = write_report(tmp_path / "runs", tmp_path / "r", metric="dice").read_text()
    assert "by λ" in text and (tmp_path / "r" / "kvasir_seg_dice_by_method_lam.png").is_file()
    md = (tmp_path / "r" / "kvasir_seg_dice_by_method_lam.md").read_text()
    assert md.splitlines()[0] == "| row | kvasir_seg | validation (selection) |"
    assert "| grid_tr-unet @ λ=0.03 | 0.700 ± 0.000 | 0.560 ± 0.010 |" in md
    assert "| grid_tr-unet @ λ=0.3 | 0.650 ± 0.000 | 0.610 ± 0.010 |" in md
    assert "Chosen by validation: `grid_tr-unet`: λ = 0.3 (validation 0.610)." in text
    assert md.splitlines()[2] == "| pce_gd-unet | 0.500 | 0.450 |"  # reference row, listed once
    assert "trimap" not in text and "by scribble length" not in text


def test_report_architecture_section(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "report"
    _e2eaug_runs(runs)
    text = write_report(runs, out).read_text()
    assert "searched generator architecture" in text
    assert (out / "montgomery_e2eaug-unet_alpha.png").is_file()
    gallery = out / "montgomery_e2eaug-unet_gallery.png"
    assert gallery.is_file() and gallery.stat().st_size < 300_000
    derived = (out / "montgomery_derived_architecture.md").read_text()
    assert "| e2eaug-unet @ 40 s0 | conv421 | conv823 |" in derived
    assert "| e2eaug-unet @ 40 s1 | conv421 | conv622 |" in derived
    assert "supervised-unet @" not in derived
    # deterministic: a second report is byte-identical
    write_report(runs, tmp_path / "again")
    for f in ("montgomery_e2eaug-unet_alpha.png", "montgomery_e2eaug-unet_gallery.png", "results.md"):
        assert (out / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f


def test_small_png_copy_keeps_small_files_small(tmp_path):
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "a.png")
    dest = small_png_copy(tmp_path / "a.png", tmp_path / "b.png")
    assert Image.open(dest).size == (60, 40)


def test_old_configs_without_new_keys_match(tmp_path):
    """A run folder written before eval.trimap_widths existed still counts as the same config."""
    from scarce.runfolder import check_run_dir as _check_run_dir
    from scarce.config import load_config, to_dict

    cfg = load_config(sets=[f"out={tmp_path}"])
    old = to_dict(cfg)
    del old["eval"]["trimap_widths"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    (tmp_path / "checkpoints").mkdir()  # a started run (a config alone may be started over)
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    _check_run_dir(cfg, tmp_path, resume=True)  # no ConfigError
    from scarce.experiments import RunSpec, _check_unchanged

    _check_unchanged([RunSpec(tmp_path, to_dict(cfg), "synthetic", "x", "unet", 40, 0)])
    cfg.eval.trimap_widths = [2]
    with pytest.raises(Exception, match="different config"):
        _check_run_dir(cfg, tmp_path, resume=True)


def test_train_run_writes_trimap(tmp_path):
    from scarce.api import train_run
    from scarce.config import ConfigError, load_config
    from scarce.evaluation.evaluate import model_trimap

    sets = [f"out={tmp_path / 'run'}", "data.size=32", "data.synthetic_n=24", "data.budget=10",
            "model.width=4", "model.depth=2", "train.iterations=2", "train.val_every=2", "train.batch_size=4",
            "train.progress=false", "train.tensorboard=false", "train.threads=1", "eval.overlays=0",
            "eval.save_predictions=false", "eval.trimap_widths=[8, 2]"]
    bad = load_config(sets=[*sets[:-1], "eval.trimap_widths=[0]"])
    with pytest.raises(ConfigError, match="trimap_widths"):
        train_run(bad)
    cfg = load_config(sets=sets)
    res = train_run(cfg)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for name, m in saved["tests"].items():
        assert list(m["trimap"]) == ["2", "8"], name
        assert all(v is None or 0.0 <= v <= 1.0 for v in m["trimap"].values())
    assert res["tests"]["synthetic"]["trimap"] == saved["tests"]["synthetic"]["trimap"]
    # same numbers as model_trimap on the same best checkpoint
    from scarce.api import load_segmenter
    from scarce.data.load import load_test_sets

    tests = load_test_sets(cfg.data, seed=cfg.train.seed)
    ref = model_trimap(load_segmenter(tmp_path / "run", cfg), tests["synthetic"], widths=[2, 8])
    assert saved["tests"]["synthetic"]["trimap"]["8"] == pytest.approx(ref[8])
    df = collect_runs(tmp_path)
    assert trimap_widths(df) == [2, 8]
