"""What the annotation page may read and write, without a browser: stems only (nothing outside
the dataset), ``scribbles/<stem>.png`` only, checked as training checks it, never a deletion;
the scribbles folder is the dataset's own (a link elsewhere is refused); the order of the images;
the server's guards (page token, host)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from scarce.cli import main
from scarce.data.types import DataError
from scarce.errors import ConfigError


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    from scarce.data.synthetic import make_synthetic

    return make_synthetic(tmp_path / "d", 5, size=16, seed=0)


def _session(folder: Path, **kw):
    from scarce.annotate.session import open_session

    return open_session(str(folder), **kw)


def _drawing(value: int = 1) -> bytes:
    arr = np.full((16, 16), 255, np.uint8)
    arr[4, 2:9] = value
    return arr.tobytes()


def test_save_writes_one_checked_png_and_nothing_else(dataset: Path) -> None:
    from PIL import Image

    s = _session(dataset)
    assert s.save("syn_0001", _drawing()) == 1
    with Image.open(dataset / "scribbles" / "syn_0001.png") as im:
        assert im.mode == "L" and np.array_equal(np.array(im).tobytes(), _drawing())
    assert json.loads((dataset / "scribbles" / ".scarce").read_text())["command"] == "scarce annotate"
    with pytest.raises(DataError, match="holds value"):
        s.save("syn_0002", _drawing(value=7))
    with pytest.raises(DataError, match="256 pixels"):
        s.save("syn_0002", b"\x01" * 200)
    with pytest.raises(DataError, match="nothing drawn.*keeps its earlier scribble"):
        s.save("syn_0001", np.full(256, 255, np.uint8).tobytes())
    for stem in ("../masks/syn_0001", "syn_0001.png", "/etc/passwd", "nope"):
        with pytest.raises(KeyError):
            s.save(stem, _drawing())
    assert sorted(p.name for p in (dataset / "scribbles").iterdir()) == [".scarce", "syn_0001.png"]
    assert s.state()["annotated"] == 1 and s.item("syn_0001")["annotated"]


def test_folder_made_by_data_scribbles_is_claimed_so_its_corrections_survive(dataset: Path, capsys) -> None:
    from scarce.data.scribbles import write_scribbles

    write_scribbles(dataset, 0.5, seed=0)
    _session(dataset).save("syn_0000", _drawing())
    assert main(["data", "scribbles", str(dataset), "--length", "1", "--overwrite"]) == 2
    assert "scarce annotate" in capsys.readouterr().err
    from PIL import Image

    with Image.open(dataset / "scribbles" / "syn_0000.png") as im:  # the correction is still there
        assert np.array(im).tobytes() == _drawing()


def test_scribbles_link_is_refused(dataset: Path, tmp_path: Path) -> None:
    os.symlink(dataset / "images", dataset / "scribbles")
    with pytest.raises(ConfigError, match="is a link"):
        _session(dataset)
    (dataset / "scribbles").unlink()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, dataset / "scribbles")
    with pytest.raises(ConfigError, match="is a link"):
        _session(dataset)


def test_images_only_folder_can_be_annotated(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "mine" / "images").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (16, 12), (i * 40, 0, 0)).save(tmp_path / "mine" / "images" / f"im{i}.jpg")
    s = _session(tmp_path / "mine")
    assert s.order == ["im0", "im1", "im2"] and s.masked == set()
    assert (s.item("im1")["width"], s.item("im1")["height"]) == (16, 12)
    arr = np.full((12, 16), 255, np.uint8)
    arr[3, 3] = 1
    s.save("im1", arr.tobytes())
    assert (tmp_path / "mine" / "scribbles" / "im1.png").is_file()


def test_order_csv_and_worst_need(dataset: Path, tmp_path: Path) -> None:
    csv = tmp_path / "suggest.csv"
    csv.write_text("stem,score,why\nsyn_0003,0.9,far from the labelled images\nsyn_0001,0.5,uncertain\n")
    s = _session(dataset, order=str(csv))
    assert s.order == ["syn_0003", "syn_0001", "syn_0000", "syn_0002", "syn_0004"]
    assert s.item("syn_0003")["hint"] == "far from the labelled images"
    csv.write_text("stem,score\nghost,1\n")
    with pytest.raises(DataError, match="line 2 names 'ghost'"):
        _session(dataset, order=str(csv))
    csv.write_text("name\nsyn_0001\n")
    with pytest.raises(DataError, match="needs a 'stem' column"):
        _session(dataset, order=str(csv))
    with pytest.raises(ConfigError, match="--order worst .* --run"):
        _session(dataset, order="worst")
    with pytest.raises(ConfigError, match="use worst, name or a CSV"):
        _session(dataset, order="best")


def test_server_guards_token_and_host(dataset: Path) -> None:
    pytest.importorskip("flask")
    from scarce.annotate.server import create_app

    client = create_app(_session(dataset), token="t0k").test_client()
    page = client.get("/")
    assert page.status_code == 200 and b"t0k" in page.data and b"http" not in page.data.split(b"<script>")[1]
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert client.put("/api/scribble/syn_0000", data=_drawing()).status_code == 403
    ok = client.put("/api/scribble/syn_0000", data=_drawing(), headers={"X-Scarce-Token": "t0k"})
    assert ok.status_code == 200 and ok.json["annotated"] == 1
    assert client.get("/api/scribble/syn_0000").data == _drawing()
    assert client.get("/api/image/..%2Fmasks%2Fsyn_0000").status_code == 404
    assert client.get("/api/state", headers={"Host": "attacker.example:8765"}).status_code == 403
    bad = client.put("/api/scribble/syn_0001", data=b"\x00" * 3, headers={"X-Scarce-Token": "t0k"})
    assert bad.status_code == 400 and "reload the page" in bad.json["error"]


def test_cli_refuses_before_serving(dataset: Path, capsys) -> None:
    assert main(["annotate", str(dataset), "--order", "worst"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--run" in err[0]
