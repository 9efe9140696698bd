"""``scarce data fingerprint``: every number on a 5-pair folder computed by hand, the EXIF-rotated
header size, a subset of stems, the printed table and the one-line error for a missing dataset."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scarce.cli import main
from scarce.data.fingerprint import fingerprint, format_fingerprints, header_size

# stem: (H, W, red value, rectangles of foreground (y0, y1, x0, x1), single specks (y, x))
PAIRS = {
    "a": (100, 200, 0, [(10, 20, 10, 20)], [(80, 150)]),   # 100 px object + a 1 px speck: 101/20000
    "b": (100, 100, 10, [(0, 20, 0, 10), (50, 60, 50, 60)], []),  # two objects, 300/10000 = 3 %
    "c": (200, 100, 20, [(0, 50, 0, 40)], []),             # 2000/20000 = 10 %
    "d": (50, 50, 30, [], []),                             # empty
    "e": (100, 100, 40, [(0, 40, 0, 50)], []),             # 2000/10000 = 20 %
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "fp"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem, (h, w, red, rects, specks) in PAIRS.items():
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0], img[..., 1], img[..., 2] = red, 100, 200
        Image.fromarray(img).save(root / "images" / f"{stem}.png")
        m = np.zeros((h, w), np.uint8)
        for y0, y1, x0, x1 in rects:
            m[y0:y1, x0:x1] = 255
        for y, x in specks:
            m[y, x] = 255
        Image.fromarray(m).save(root / "masks" / f"{stem}.png")
    return root


def test_numbers_by_hand(folder):
    fp = fingerprint(folder)
    assert fp["images"] == 5 and fp["channels"] == 3 and fp["stored_modes"] == {"RGB": 5}
    assert fp["height"] == {"min": 50, "median": 100, "max": 200}
    assert fp["width"] == {"min": 50, "median": 100, "max": 200}
    # W/H = 2, 1, 0.5, 1, 1 → sorted 0.5 1 1 1 2; p10 at position 0.4: 0.5 + 0.4 · 0.5
    assert fp["aspect"] == pytest.approx({"min": 0.5, "p10": 0.7, "median": 1.0, "p90": 1.6, "max": 2.0})
    # non-empty shares 0.00505, 0.03, 0.1, 0.2 (the speck counts as foreground)
    of = fp["object_fraction"]
    assert of["min"] == pytest.approx(0.00505) and of["median"] == pytest.approx(0.065)
    assert of["p10"] == pytest.approx(0.00505 + 0.3 * (0.03 - 0.00505))
    assert fp["size_bins"] == pytest.approx({"empty": 0.2, "< 2 %": 0.2, "2–5 %": 0.2, "5–15 %": 0.2, "> 15 %": 0.2})
    # 1 px < 0.01 % of 20000 px = 2 px: a speck, not an object
    assert fp["objects_per_mask"] == pytest.approx({"median": 1, "mean": 1.0, "max": 2, "several": 0.2,
                                                    "with_specks": 0.2})
    s = fp["smallest_object"]
    assert (s["pixels"], s["image"], s["height"], s["width"]) == (100, "a", 100, 200)  # 0.5 % beats b's 1 %
    assert s["at"]["128"]["squash"] == pytest.approx(100 * 1.28 * 0.64)  # × (128/100)(128/200)
    assert s["at"]["128"]["pad"] == pytest.approx(100 * 0.64 ** 2)      # × (128/200)²
    assert s["at"]["256"]["pad"] == pytest.approx(100 * 1.28 ** 2)
    it = fp["intensity"]
    # red: 20000 px of 0, 10000 of 10, 20000 of 20, 2500 of 30, 10000 of 40 (62500 px)
    assert it["images"] == 5
    assert it["mean"] == pytest.approx([15.6, 100, 200])
    assert it["std"] == pytest.approx([math.sqrt(436 - 15.6 ** 2), 0, 0])
    assert (it["p0.5"], it["p50"], it["p99.5"]) == ([0, 100, 200], [20, 100, 200], [40, 100, 200])
    json.dumps(fp)  # plain JSON types


def test_subset_table_and_exif(folder, tmp_path):
    fp = fingerprint(folder, stems=["b"], intensity_images=0)
    assert fp["images"] == 1 and fp["intensity"] is None
    assert fp["smallest_object"]["pixels"] == 100 and fp["objects_per_mask"]["max"] == 2
    table = format_fingerprints([fingerprint(folder), fp])
    assert "objects per mask" in table and "intensity mean" in table
    md = format_fingerprints([fp], markdown=True)
    assert md.splitlines()[0].startswith("| ") and "| 1 |" in md
    # EXIF orientation 6 (rotated 90°): the header's 20 × 10 becomes 10 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (20, 10)).save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert header_size(tmp_path / "r.jpg") == (20, 10, "RGB")


def test_cli_table_json_and_missing(folder, tmp_path, capsys):
    assert main(["data", "fingerprint", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "fp" in out.splitlines()[0] and "smallest object" in out
    assert main(["data", "fingerprint", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["images"] == 5
    assert main(["data", "fingerprint", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scarce: error:") and "nothing" in err[0]
