"""Regenerate the example HTML report ``docs/results/report_example/`` and its screenshot.

A tiny grid on the built-in synthetic data (supervised vs supervised + ``combine`` augmentation,
U-Net, budgets 10 and 20, 3 seeds, predictions saved; a few minutes on 2 CPU cores) is trained
into ``--runs`` (default ``runs/report_example``, git-ignored; resumed when run again), then

    scarce report RUNS -o docs/results/report_example --html --overwrite

writes the report, and headless Chromium (the system ``chromium`` + ``chromedriver``, paths
given explicitly: nothing is downloaded) opens ``index.html`` from ``file://`` and saves
``screenshot.png`` beside it (docs/experiments.md shows it). The run folders are not committed.

    python benchmarks/html_report_example.py
    python benchmarks/html_report_example.py --iterations 60 --out /tmp/example   # quicker look
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def grid(runs: Path, iterations: int, workers: int) -> dict:
    return {
        "name": "report_example", "out": str(runs), "workers": workers, "threads": 1,
        "base": {"preset": "cpu", "data": {"dataset": "synthetic", "size": 48},
                 "model": {"width": 8},
                 "train": {"iterations": iterations, "batch_size": 4, "val_every": max(1, iterations // 5),
                           "tensorboard": False, "threads": 1},
                 "eval": {"overlays": 0, "save_predictions": True}},
        "datasets": ["synthetic"],
        "methods": [{"label": "supervised", "method": {"name": "supervised"}},
                    {"label": "combine", "method": {"name": "supervised", "augment": "combine"}}],
        "models": ["unet"], "budgets": [10, 20], "seeds": [0, 1, 2],
    }


def screenshot(index: Path, png: Path, width: int = 1400, max_height: int = 2600) -> None:
    """Open ``index`` in headless Chromium and save the top of the page (≤ ``max_height`` px) as ``png``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        raise SystemExit("no system chromium/chromedriver: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},1000", "--hide-scrollbars"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    try:
        drv.get(index.resolve().as_uri())
        WebDriverWait(drv, 30).until(lambda d: d.execute_script(
            "return document.readyState == 'complete' && Array.prototype.every.call(document.images, "
            "function(i){ return i.complete; })"))
        height = int(drv.execute_script("return document.body.scrollHeight"))
        drv.set_window_size(width, min(height, max_height))
        time.sleep(0.5)
        with tempfile.TemporaryDirectory() as tmp:  # then move into place: no half-written PNG
            shot = Path(tmp) / "shot.png"
            drv.save_screenshot(str(shot))
            from scarce.utils.io import atomic_write_bytes

            atomic_write_bytes(png, shot.read_bytes())
    finally:
        drv.quit()


def main(argv: list[str] | None = None) -> int:
    from scarce.cli import main as scarce

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/report_example", help="grid output (resumed; relative to the repository)")
    p.add_argument("--out", default="docs/results/report_example", help="report folder (relative to the repository)")
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    os.chdir(ROOT)  # relative paths: the committed report names no machine's folders
    runs, out = Path(a.runs), Path(a.out)
    runs.mkdir(parents=True, exist_ok=True)
    grid_yaml = runs / "grid.yaml"
    grid_yaml.write_text(yaml.safe_dump(grid(runs, a.iterations, a.workers), sort_keys=False))
    if scarce(["experiment", str(grid_yaml), "--no-report"]) != 0:
        return 1
    if scarce(["report", str(runs), "-o", str(out), "--html", "--overwrite"]) != 0:
        return 1
    screenshot(out / "index.html", out / "screenshot.png")
    print(f"screenshot: {out / 'screenshot.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
