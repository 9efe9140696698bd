"""Shared parts of the annotation page's browser tests: a headless Chromium (as the HTML report's
browser test finds it: the system chromium + chromedriver, nothing downloaded; skipped, saying
why, where none can start), the page served on a free port in a thread, and strokes drawn as real
pointer input (W3C actions: pointerdown / pointermove / pointerup) at image-pixel positions."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pytest

from tests.browser import headless_chromium

ZOOM = 4
"""Screen pixels per image pixel in the tests: every pointer position falls well inside its pixel."""


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (selenium WebDriver) with its console log kept; skips where none can start."""
    pytest.importorskip("flask", reason="flask is not installed (pip install -e '.[annotate]')")
    yield from headless_chromium("--window-size=1280,900", "--force-device-scale-factor=1")


@contextmanager
def served(dataset: Path | str, **kw) -> Iterator[str]:
    """The page for ``dataset`` (:func:`scarce.annotate.session.open_session` keywords) on a free
    port of 127.0.0.1, in a thread; yields its URL."""
    from scarce.annotate.server import PageServer
    from scarce.annotate.session import open_session

    server = PageServer(open_session(str(dataset), **kw), port=0).start()
    try:
        yield server.url
    finally:
        server.stop()


def wait_for(driver, script: str, timeout: float = 20.0, what: str = "") -> object:
    """Poll ``script`` (JS returning a value) until it is truthy."""
    end = time.time() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.time() > end:
            msg = driver.execute_script("return document.getElementById('msg').textContent")
            raise AssertionError(f"timed out waiting for {what or script} (page message: {msg!r})")
        time.sleep(0.05)


def open_page(driver, url: str, stem: str | None = None) -> None:
    """Load the page (at image ``stem`` when given), wait until it shows an image, zoom to :data:`ZOOM`."""
    driver.get(url + (f"#{stem}" if stem else ""))
    wait_ready(driver, stem)
    driver.execute_script(f"scarceAnnotate.setZoom({ZOOM}, true)")


def wait_ready(driver, stem: str | None = None) -> str:
    cond = "document.body.dataset.state === 'ready' && document.body.dataset.stem"
    if stem:
        cond += f" === {stem!r}"
    wait_for(driver, f"return {cond};", what=f"image {stem or ''} shown")
    return driver.execute_script("return document.body.dataset.stem")


def keys(driver, text: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(text).perform()


def strokes(driver, paths: Sequence[Sequence[tuple[int, int]]]) -> None:
    """Draw each path (image pixels (x, y)) as one stroke of real pointer input: pointerdown at the
    first point, a pointermove to each next one, pointerup; one W3C actions request for all."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    left, top = driver.execute_script(
        "const r = document.getElementById('draw').getBoundingClientRect(); return [r.left, r.top];")
    scale = driver.execute_script(
        "const r = document.getElementById('draw').getBoundingClientRect(); return r.width / scarceAnnotate.state.W;")

    def at(x: int, y: int) -> tuple[int, int]:
        return int(round(left + (x + 0.5) * scale)), int(round(top + (y + 0.5) * scale))

    actions = ActionBuilder(driver, duration=0)
    for path in paths:
        actions.pointer_action.move_to_location(*at(*path[0]))
        actions.pointer_action.pointer_down()
        for x, y in path[1:]:
            actions.pointer_action.move_to_location(*at(x, y))
        actions.pointer_action.pointer_up()
    actions.perform()


def save(driver) -> str:
    """Press ``s`` and wait for the page to say it saved; returns its message."""
    keys(driver, "s")
    return str(wait_for(driver, "const m = document.getElementById('msg'); "
                                "return m.className === 'ok' && !document.body.dataset.dirty && m.textContent;",
                        what="saved"))


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.mode == "L", im.mode
        return np.array(im)


def row_runs(scribble: np.ndarray, value: int) -> list[list[tuple[int, int]]]:
    """The pixels of ``scribble`` equal to ``value`` as horizontal runs, each a two-point stroke
    (a 1-pixel brush draws exactly these pixels)."""
    out: list[list[tuple[int, int]]] = []
    for y in range(scribble.shape[0]):
        row = np.flatnonzero(scribble[y] == value)
        if not len(row):
            continue
        starts = np.flatnonzero(np.diff(np.r_[-2, row]) != 1)
        ends = np.r_[starts[1:], len(row)] - 1
        out += [[(int(row[a]), y), (int(row[b]), y)] for a, b in zip(starts, ends)]
    return out


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
