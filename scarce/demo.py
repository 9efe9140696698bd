"""``scarce demo``: the embedded default job — compare methods on built-in synthetic data.

Synthetic images are a function of their masks (so the mask→image GAN of E2EAug can learn
them) and come with a colour/contrast-shifted out-of-distribution test set, so the demo's
table has an ID and an OOD column like the paper's. Uses the experiment grid machinery, so the
demo folder is an ordinary grid output (runs resume; report in ``<out>/report``).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Sequence

import yaml

from scarce.config import deep_merge


def demo_grid(out: str, quick: bool = False) -> dict:
    g = yaml.safe_load((resources.files("scarce") / "configs" / "demo.yaml").read_text())
    from scarce.methods import METHODS, load_builtin_methods

    load_builtin_methods()
    if "e2eaug" in METHODS:
        g["methods"].append({"label": "e2eaug", "method": {"name": "e2eaug"}})
    g["out"] = str(Path(out) / "runs")
    g["report"] = str(Path(out) / "report")
    if quick:
        g = deep_merge(g, {"base": {"data": {"size": 32, "synthetic_n": 60},
                                    "train": {"iterations": 20, "val_every": 10, "batch_size": 4},
                                    "eval": {"overlays": 1}}})
        for m in g["methods"]:
            if m["method"]["name"] == "e2eaug":
                m["method"] = {**m["method"], "pretrain_iters": 10}
    return g


def is_demo_folder(folder: Path) -> bool:
    """True when ``folder`` holds only an earlier demo (``runs/``, ``report/``): it is resumed."""
    names = {e.name for e in folder.iterdir() if not e.name.startswith(".")}
    return bool(names) and names <= {"runs", "report"}


def run_demo(out: str = "runs/demo", sets: Sequence[str] | None = None, workers: int | None = None,
             quick: bool = False, overwrite: bool = False) -> str:
    """Run the demo grid and print its results table; returns the report folder. ``out`` must be
    new, empty or an earlier demo folder (resumed; :mod:`scarce.utils.paths`)."""
    from scarce.experiments import run_grid
    from scarce.utils.paths import check_output_folder, write_marker

    check_output_folder(out, overwrite=overwrite, what="demo folder", previous=is_demo_folder,
                        command="scarce demo")
    write_marker(out, "scarce demo")  # a container: its grid's runs and report go inside

    res = run_grid(demo_grid(out, quick), sets, workers=workers)
    report = Path(res["report"])
    md = report / "results.md"
    if md.exists():
        print(md.read_text())
    print(f"report folder: {report}")
    if res.get("failed"):
        raise RuntimeError(f"{len(res['failed'])} demo run(s) failed: {res['failed']}")
    return str(report)
