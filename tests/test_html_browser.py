"""The HTML report in a real browser: headless Chromium (Debian ``chromium`` + ``chromium-driver``)
driven by selenium opens ``index.html`` from ``file://`` after a tiny real grid (2 methods × 2
seeds, predictions saved) and checks what a person would see: the tables, every picture loaded,
the per-image browser reacting to its controls, and no console error.

Nothing is downloaded at run time: the system chromedriver and chromium are passed to selenium
explicitly (so Selenium Manager is never started). The test skips, saying why, only where no
browser is installed or it cannot start (``.ci/run`` installs both with apt).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scarce.cli import main
from tests.browser import headless_chromium

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (selenium WebDriver) with its console log kept; skips where none can start."""
    yield from headless_chromium("--window-size=1400,1000", "--allow-file-access-from-files")


def _grid_report(tmp_path: Path) -> Path:
    grid = {
        "name": "t", "out": str(tmp_path / "runs"), "report": str(tmp_path / "grid_report"), "workers": 1,
        "base": {"data": {"size": 32, "synthetic_n": 40, "cache_dir": str(tmp_path / "cache")},
                 "model": {"width": 4, "depth": 2},
                 "train": {"iterations": 4, "val_every": 2, "batch_size": 4, "tensorboard": False, "threads": 1},
                 "eval": {"overlays": 0, "save_predictions": True}},
        "datasets": ["synthetic"],
        "methods": [{"label": "supervised", "method": {"name": "supervised", "augment": "none"}},
                    {"label": "combine", "method": {"name": "supervised", "augment": "combine"}}],
        "models": ["unet"], "budgets": [10], "seeds": [0, 1],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["experiment", str(path), "--no-report"]) == 0
    assert main(["report", str(tmp_path / "runs"), "-o", str(tmp_path / "report"), "--html"]) == 0
    return tmp_path / "report" / "index.html"


ALL_LOADED = "return Array.prototype.every.call(document.images, function(i){ return i.complete; });"
BROKEN = ("return Array.prototype.filter.call(document.images, function(i){ return !(i.naturalWidth > 0); })"
          ".map(function(i){ return i.getAttribute('src'); });")
VISIBLE = ("return Array.prototype.filter.call(document.querySelectorAll(arguments[0]), "
           "function(e){ return e.offsetParent !== null; }).length;")


def test_report_renders_in_headless_chromium(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    index = _grid_report(tmp_path)
    browser.get(index.resolve().as_uri())
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    wait.until(lambda d: d.execute_script(ALL_LOADED))

    # tables: the stats table (both rows, a 95 % interval per cell) and the Markdown report's table
    stats = browser.find_element(By.CSS_SELECTOR, "#stats table.stats")
    rows = [r.find_element(By.TAG_NAME, "th").text for r in stats.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert rows == ["supervised-unet", "combine-unet"]  # reference first
    assert len(stats.find_elements(By.CSS_SELECTOR, "td .ci")) == 4
    assert "±" in stats.text and "reference" in stats.text and "p" in stats.text
    assert browser.find_elements(By.CSS_SELECTOR, "#report table")
    assert browser.find_elements(By.CSS_SELECTOR, "#report img")  # the sample-efficiency / bar figure

    # every picture decoded (the Markdown report's figures and the browser's tiles)
    assert browser.execute_script(BROKEN) == []

    # per-image browser: image, ground truth and both methods' predictions per card
    cards = browser.find_elements(By.CSS_SELECTOR, "#pi-grid .pi-card")
    assert cards
    methods = [c.get_attribute("value") for c in browser.find_elements(By.CSS_SELECTOR, "#pi-methods input")]
    assert methods == ["supervised-unet", "combine-unet"]
    assert browser.execute_script(VISIBLE, "#pi-grid figure[data-method] img") == 2 * len(cards)
    # filter: hiding a method hides its predictions only
    browser.find_elements(By.CSS_SELECTOR, "#pi-methods input")[1].click()
    assert browser.execute_script(VISIBLE, "#pi-grid figure[data-method='combine-unet']") == 0
    assert browser.execute_script(VISIBLE, "#pi-grid figure[data-method='supervised-unet']") == len(cards)
    # worst first by the chosen method (the card header ends with its score), for either method
    def shown_scores() -> list[float]:
        return [float(h.text.rsplit(": ", 1)[1]) for h in browser.find_elements(By.CSS_SELECTOR, "#pi-grid .pi-head")]

    assert shown_scores() == sorted(shown_scores())
    Select(browser.find_element(By.ID, "pi-sort")).select_by_index(1)
    assert "combine-unet" in browser.find_element(By.CSS_SELECTOR, "#pi-grid .pi-head").text
    assert shown_scores() == sorted(shown_scores())
    # switching the test set shows that set's images (the OOD set has other images), all loaded
    sel = Select(browser.find_element(By.ID, "pi-set"))
    assert [o.text for o in sel.options] == ["synthetic → synthetic", "synthetic → synthetic_ood"]
    srcs_before = {e.get_attribute("src") for e in browser.find_elements(By.CSS_SELECTOR, "#pi-grid img")}
    sel.select_by_index(1)
    wait.until(lambda d: d.execute_script(ALL_LOADED))
    srcs_after = {e.get_attribute("src") for e in browser.find_elements(By.CSS_SELECTOR, "#pi-grid img")}
    assert srcs_after and srcs_after.isdisjoint(srcs_before)
    assert all("synthetic_ood" in s for s in srcs_after)
    assert browser.execute_script(BROKEN) == []
    assert browser.execute_script(VISIBLE, "#pi-grid figure[data-method='combine-unet']") > 0  # controls rebuilt

    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == []
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
