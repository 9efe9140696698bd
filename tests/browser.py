"""The headless Chromium of the browser tests (the HTML report, the annotation page): the system
chromium + chromedriver passed to selenium explicitly, so nothing is downloaded (Selenium Manager
never starts); a test skips, saying why, only where no browser is installed or it cannot start
(``.ci/run`` installs both with apt)."""
from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")


def _which(names: tuple[str, ...]) -> str | None:
    for n in names:
        p = shutil.which(n) or (n if os.path.isfile(n) and os.access(n, os.X_OK) else None)
        if p:
            return p
    return None


def headless_chromium(*args: str) -> Iterator:
    """Yield a headless Chromium WebDriver started with ``args`` beside the common flags, its
    browser console log kept; quit afterwards. Use from a fixture: ``yield from headless_chromium(...)``."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    binary, driver = _which(BROWSERS), _which(DRIVERS)
    if binary is None or driver is None:
        pytest.skip("no system chromium/chromedriver (Debian: apt-get install chromium chromium-driver; .ci/run "
                    "installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    except WebDriverException as e:
        pytest.skip(f"chromium did not start ({binary}, {driver}): {str(e).splitlines()[0]}")
    yield drv
    drv.quit()
