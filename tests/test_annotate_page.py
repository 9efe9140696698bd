"""The annotation page in a real browser (headless Chromium driven by selenium, see
tests/annotate_browser.py): strokes drawn with pointer input per class are saved as
``scribbles/<stem>.png`` with exactly those pixels; undo, the eraser, the brush radius, the click
tool, reloading and correcting an existing scribble, autosave on moving on, and the refusals
(an empty drawing) behave as a person expects. Nothing but ``scribbles/<stem>.png`` is written."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests.annotate_browser import (browser, console_errors, keys, open_page, read_png, save, served,  # noqa: F401
                                    strokes, wait_for, wait_ready)

N = 6
SIZE = 32


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    from scarce.data.synthetic import make_synthetic

    return make_synthetic(tmp_path / "d", N, size=SIZE, seed=0)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "scribbles" not in p.parts}


def _disc_line(shape: tuple[int, int], a: tuple[int, int], b: tuple[int, int], r: int) -> np.ndarray:
    """Pixels a brush of radius ``r`` paints from ``a`` to ``b`` along a horizontal or vertical line."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    out = np.zeros(shape, bool)
    (x0, y0), (x1, y1) = a, b
    for x in range(min(x0, x1), max(x0, x1) + 1):
        for y in range(min(y0, y1), max(y0, y1) + 1):
            out |= (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    return out


def test_strokes_per_class_are_saved_pixel_for_pixel(browser, dataset: Path) -> None:  # noqa: F811
    before = _digests(dataset)
    with served(dataset) as url:
        open_page(browser, url, "syn_0002")
        assert browser.find_element("id", "progress").text == f"0 of {N} annotated"
        keys(browser, "[[[[[")  # radius 0: a one-pixel brush
        keys(browser, "1")
        strokes(browser, [[(3, 5), (10, 5)], [(12, 8), (12, 14)]])
        keys(browser, "0")
        strokes(browser, [[(20, 20), (25, 25)]])
        msg = save(browser)
        assert msg == "saved scribbles/syn_0002.png"
        assert browser.find_element("id", "progress").text == f"1 of {N} annotated"
        resources = browser.execute_script(
            "return performance.getEntriesByType('resource').map(function(e){ return e.name; });")
        assert resources and all(r.startswith(url) for r in resources), resources  # nothing from elsewhere
        assert console_errors(browser) == []
    expected = np.full((SIZE, SIZE), 255, np.uint8)
    expected[5, 3:11] = 1
    expected[8:15, 12] = 1
    for i in range(6):
        expected[20 + i, 20 + i] = 0
    assert np.array_equal(read_png(dataset / "scribbles" / "syn_0002.png"), expected)
    assert sorted(p.name for p in (dataset / "scribbles").iterdir()) == [".scarce", "syn_0002.png"]
    assert _digests(dataset) == before  # images/, masks/, split.csv untouched


def test_brush_radius_undo_eraser_and_click(browser, dataset: Path) -> None:  # noqa: F811
    with served(dataset) as url:
        open_page(browser, url, "syn_0001")
        keys(browser, "[[[[[]]")  # radius 2
        keys(browser, "1")
        strokes(browser, [[(8, 8), (20, 8)]])
        strokes(browser, [[(8, 22), (20, 22)]])
        keys(browser, "z")  # the second stroke is gone
        keys(browser, "e[[")  # eraser, radius 0
        strokes(browser, [[(14, 5), (14, 11)]])
        keys(browser, "c0")  # click tool, background: one disc of the click radius (2 at 32 px)
        strokes(browser, [[(25, 26)]])
        save(browser)
    expected = np.full((SIZE, SIZE), 255, np.uint8)
    expected[_disc_line((SIZE, SIZE), (8, 8), (20, 8), 2)] = 1
    expected[5:12, 14] = 255
    expected[_disc_line((SIZE, SIZE), (25, 26), (25, 26), 2)] = 0
    assert np.array_equal(read_png(dataset / "scribbles" / "syn_0001.png"), expected)


def test_existing_scribble_is_reloaded_corrected_and_saved_on_moving_on(browser, dataset: Path) -> None:  # noqa: F811
    from PIL import Image

    hand = np.full((SIZE, SIZE), 255, np.uint8)
    hand[4:9, 4:9] = 1
    hand[28, 2:30] = 0
    (dataset / "scribbles").mkdir()
    Image.fromarray(hand).save(dataset / "scribbles" / "syn_0003.png")  # drawn elsewhere: no marker
    with served(dataset) as url:
        open_page(browser, url, "syn_0003")
        shown = browser.execute_script("return Array.from(scarceAnnotate.state.labels);")
        assert np.array_equal(np.array(shown, np.uint8).reshape(SIZE, SIZE), hand)
        keys(browser, "[[[[[0")
        strokes(browser, [[(20, 2), (20, 9)]])
        keys(browser, "n")  # moving on saves first
        assert wait_ready(browser, "syn_0004") == "syn_0004"
        keys(browser, "p")
        wait_ready(browser, "syn_0003")
        again = browser.execute_script("return Array.from(scarceAnnotate.state.labels);")
    hand[2:10, 20] = 0
    assert np.array_equal(read_png(dataset / "scribbles" / "syn_0003.png"), hand)
    assert np.array_equal(np.array(again, np.uint8).reshape(SIZE, SIZE), hand)
    assert sorted(p.name for p in (dataset / "scribbles").iterdir()) == ["syn_0003.png"]  # a person's folder: no marker


def test_empty_drawing_is_not_saved_and_the_page_says_why(browser, dataset: Path) -> None:  # noqa: F811
    with served(dataset) as url:
        open_page(browser, url, "syn_0000")
        keys(browser, "1")
        strokes(browser, [[(3, 3), (6, 3)]])
        keys(browser, "zs")  # undo the only stroke, then save
        msg = wait_for(browser, "const m = document.getElementById('msg'); return m.className === 'error' && "
                                "m.textContent;", what="refusal")
        assert "nothing drawn on syn_0000" in msg
        status = browser.execute_script(
            "return fetch('api/scribble/syn_0000', {method: 'PUT', body: new Uint8Array(1024).fill(1)})"
            ".then(function(r){ return r.status; });")
        assert status == 403  # a write without the page's token (what another web site would send)
    assert not (dataset / "scribbles").exists()
