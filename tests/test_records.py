"""`scarce export`: result records of finished runs, read by `scarce report` like the runs.

Fabricated runs (tests/test_reports.make_runs) plus the heavy files a real run has; the report
built from the records must equal the report built from the runs, byte for byte.
"""
import json
import os
import shutil

import pytest

from scarce.cli import main
from scarce.config import ConfigError
from scarce.reports.records import MARKER, export_records, record_files
from scarce.reports.report import write_report
from tests.test_reports import make_runs

HEAVY = ("checkpoints/best.pt", "checkpoints/last.pt", "eval/isic2018/predictions/a.png",
         "eval/isic2018/overlays/a.png", "gan/generator.pt")
LIGHT = ("split.json", "log.csv", "architecture.json", "eval/summary.txt", "eval/isic2018/per_image.csv",
         "eval/ph2/per_image.csv")


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    make_runs(root)
    run = root / "supervised-unet" / "b20" / "s0"
    for f in HEAVY + LIGHT:
        (run / f).parent.mkdir(parents=True, exist_ok=True)
        (run / f).write_bytes(b"x" * 10)
    return root


def test_record_holds_the_small_files_only(runs, tmp_path):
    res = export_records([runs], tmp_path / "rec")
    run = tmp_path / "rec" / "supervised-unet" / "b20" / "s0"
    assert record_files(run) == sorted(["config.yaml", "metrics.json", *LIGHT])
    assert not any((run / f).exists() for f in HEAVY)
    assert len(res["copied"]) == 12 and res["unfinished"] == 1 and not res["replaced"]
    assert not (tmp_path / "rec" / "unfinished").exists()
    # metrics.json under eval/ (older layout) is kept where it was
    assert (tmp_path / "rec" / "supervised-unet" / "b20" / "s2" / "eval" / "metrics.json").is_file()
    assert (tmp_path / "rec" / MARKER).is_file()
    # the copy keeps the metrics' time: `scarce report --newest` orders records as it ordered runs
    src, dst = runs / "combine-deeplabv3/b40/s1/metrics.json", tmp_path / "rec/combine-deeplabv3/b40/s1/metrics.json"
    assert os.stat(src).st_mtime == os.stat(dst).st_mtime


def test_report_from_records_equals_report_from_runs(runs, tmp_path):
    export_records([runs], tmp_path / "rec")
    write_report(runs, tmp_path / "a")
    write_report(tmp_path / "rec", tmp_path / "b")
    for name in ("results.csv", "results.md", "isic2018_jaccard.md"):
        a = (tmp_path / "a" / name).read_text().replace(str(runs), "ROOT").replace("`runs`", "`ROOT`")
        b = (tmp_path / "b" / name).read_text().replace(str(tmp_path / "rec"), "ROOT").replace("`rec`", "`ROOT`")
        assert a == b, name


def test_export_again_is_idempotent_and_refuses_a_changed_run(runs, tmp_path):
    rec = tmp_path / "rec"
    export_records([runs], rec)
    res = export_records([runs], rec)
    assert res["copied"] == [] and res["replaced"] == [] and len(res["unchanged"]) == 12
    # a run trained again: its record differs and is kept unless --overwrite
    m = runs / "combine-deeplabv3" / "b40" / "s1" / "metrics.json"
    new = json.loads(m.read_text())
    new["isic2018"]["jaccard_mean"] = 0.123
    m.write_text(json.dumps(new))
    before = (rec / "combine-deeplabv3/b40/s1/metrics.json").read_text()
    with pytest.raises(ConfigError, match="differ from their runs.*combine-deeplabv3/b40/s1.*--overwrite"):
        export_records([runs], rec)
    assert (rec / "combine-deeplabv3/b40/s1/metrics.json").read_text() == before
    res = export_records([runs], rec, overwrite=True)
    assert res["replaced"] == ["combine-deeplabv3/b40/s1"]
    assert json.loads((rec / "combine-deeplabv3/b40/s1/metrics.json").read_text())["isic2018"]["jaccard_mean"] == 0.123


def test_records_accumulate_over_exports(runs, tmp_path):
    """The use: runs of one session exported, their folders deleted, later runs added."""
    rec, later = tmp_path / "rec", tmp_path / "later"
    export_records([runs], rec)
    make_runs(later)
    (later / "supervised-unet").rename(later / "other-unet")  # same cells, other folders
    shutil.rmtree(later / "combine-deeplabv3")
    res = export_records([later], rec)
    assert len(res["copied"]) == 6 and len(res["unchanged"]) == 0
    assert len(list(rec.rglob("config.yaml"))) == 18


def test_export_refuses_unsafe_destinations(runs, tmp_path):
    with pytest.raises(ConfigError, match="records folder"):
        export_records([runs], runs / "records")  # the report would read every run twice
    with pytest.raises(ConfigError, match="records folder"):
        export_records([runs], runs)
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "chapter1.tex").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        export_records([runs], user)
    assert sorted(p.name for p in user.iterdir()) == ["chapter1.tex"]
    with pytest.raises(ConfigError, match="does not exist"):
        export_records([tmp_path / "nope"], tmp_path / "rec")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no finished run"):
        export_records([empty], tmp_path / "rec")
    assert not (tmp_path / "rec").exists()


def test_two_roots_with_the_same_run_path(runs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(runs, other)
    # identical records under the same path: one record
    res = export_records([runs, other], tmp_path / "rec")
    assert len(res["copied"]) == 12
    m = other / "supervised-unet" / "b40" / "s1" / "metrics.json"
    m.write_text(m.read_text().replace("0.75", "0.5"))
    with pytest.raises(ConfigError, match="different runs with the same path 'supervised-unet/b40/s1'"):
        export_records([runs, other], tmp_path / "rec2")
    assert not (tmp_path / "rec2").exists()


def test_cli_export_then_report(runs, tmp_path, capsys):
    assert main(["export", str(runs), "-o", str(tmp_path / "rec")]) == 0
    out = capsys.readouterr().out
    assert "12 new" in out and "1 unfinished" in out
    assert main(["report", str(tmp_path / "rec"), "-o", str(tmp_path / "rep")]) == 0
    assert "supervised-unet" in (tmp_path / "rep" / "results.md").read_text()
    assert main(["export", str(runs), "-o", str(runs)]) == 2


def test_html_report_of_records_says_why_pictures_are_missing(tmp_path, capsys):
    """The HTML report's seed and per-image tests work on records; the browser cannot re-predict
    a record (no checkpoint) and says so instead of 'train it first'."""
    from tests.test_html_report import _fake_runs

    _fake_runs(tmp_path / "runs", tmp_path / "cache", seeds=(0, 1), predictions=False)
    export_records([tmp_path / "runs"], tmp_path / "rec")
    assert main(["report", str(tmp_path / "rec"), "-o", str(tmp_path / "rep"), "--html", "--browser-images", "2"]) == 0
    err = capsys.readouterr().err
    assert "no checkpoints: a result record" in err and "train it first" not in err
    stats = (tmp_path / "rep" / "synthetic_dice_stats.csv").read_text()
    assert "aug" in stats and "plain" in stats


def test_a_killed_exports_staging_folder_is_not_a_run(runs, tmp_path):
    """SIGKILL during an export leaves ``RECORDS/.scarce-*.tmp`` with run files in it: neither the
    report nor the next export may count it (a duplicate of every run it held)."""
    rec = tmp_path / "rec"
    export_records([runs], rec)
    shutil.copytree(rec / "supervised-unet", rec / ".scarce-abc.tmp" / "supervised-unet")
    assert export_records([runs], rec)["copied"] == []
    write_report(rec, tmp_path / "rep")  # would refuse duplicate cells
    assert "12 runs" in (tmp_path / "rep" / "results.md").read_text()
