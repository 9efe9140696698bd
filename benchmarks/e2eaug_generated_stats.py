"""Do E2EAug's generated images copy the training set's intensity distribution?

For a finished E2EAug run (its ``checkpoints/last.pt`` holds the generator), this paints images
for the run's own training masks augmented as in training (``mask_ops``) and compares simple
intensity statistics — per-image mean (brightness) and standard deviation (contrast) — of
  real     the training images,
  real+int the training images through the run's ``method.intensity`` (one draw each, 8 draws),
  gen      the generated images,
  gen+int  the generated images through the same intensity augmentation (``intensity_generated``),
  gen+match the generated images matched to a real image's mean/std (``generated_appearance:
           match_real``), then through the intensity augmentation,
  test     the dataset's test images.
What matters for robustness is the SPREAD of these statistics across the images the segmenter
trains on: a narrow spread means the segmenter never sees brighter/darker/lower-contrast images.

    python benchmarks/e2eaug_generated_stats.py runs/quality/accept/montgomery/e2eaug-int-unet/b9/s0
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def stats(x: torch.Tensor) -> tuple[float, float, float, float]:
    """x N×C×H×W → (mean, spread) of the per-image mean and of the per-image std."""
    m = x.mean(dim=(1, 2, 3))
    s = x.flatten(1).std(dim=1)
    return float(m.mean()), float(m.std()), float(s.mean()), float(s.std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--draws", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from scarce.api import load_run_config
    from scarce.augment.intensity import apply_intensity
    from scarce.data.load import prepare_run_data
    from scarce.engine.trainer import Trainer
    from scarce.methods import method_spec
    from scarce.methods.gan.pretrain import augment_masks_for
    from scarce.utils.runfolder import RunPaths
    from scarce.models.gan import one_hot_masks

    cfg = load_run_config(a.run)
    data = prepare_run_data(cfg.data, seed=cfg.train.seed)
    with tempfile.TemporaryDirectory() as d:
        m = Trainer(cfg, data, Path(d), method=method_spec(cfg)).method
    ck = torch.load(RunPaths(a.run).last_checkpoint, weights_only=True, map_location="cpu")
    m.generator.load_state_dict(ck["method"]["modules"]["generator"])
    m.generator.eval()
    g = torch.Generator().manual_seed(0)
    real, masks = data.train.images, data.train.masks
    from scarce.methods.gan.base import match_appearance

    gens, reals_i, gens_i, gens_m = [], [], [], []
    name, icfg = m._intensity if m._intensity else ("nnunet", None)
    with torch.no_grad():
        for _ in range(a.draws):
            aug = augment_masks_for(m.mcfg, masks, g, fraction=1.0)
            fake = m.generator(one_hot_masks(aug, m.ctx.num_classes, real.dtype)).clamp(0, 1)
            gens.append(fake)
            reals_i.append(apply_intensity(name, real, g, icfg))
            gens_i.append(apply_intensity(name, fake, g, icfg))
            gens_m.append(apply_intensity(name, match_appearance(fake, real, g), g, icfg))
    test = next(iter(data.tests.values())).images
    rows = {"real": real, "real+int": torch.cat(reals_i), "gen": torch.cat(gens), "gen+int": torch.cat(gens_i),
            "gen+match": torch.cat(gens_m), "test": test}
    print(f"run {a.run}: {len(real)} training images, {a.draws} draws")
    print("| images | n | brightness mean | brightness spread (std over images) | contrast mean | contrast spread |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for k, v in rows.items():
        bm, bs, cm, cs = stats(v.float())
        print(f"| {k} | {len(v)} | {bm:.3f} | {bs:.3f} | {cm:.3f} | {cs:.3f} |")


if __name__ == "__main__":
    main()
