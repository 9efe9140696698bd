"""Several grids in one pool (`scarce experiment A.yaml B.yaml`): the first grid's runs first,
each grid's report as soon as its own runs have ended, a run two grids share trained once, and
everything checked and locked before anything trains."""
import json
from pathlib import Path

import pytest
import yaml

from scarce import experiments
from scarce.cli import main
from scarce.config import ConfigError

BASE = {"data": {"size": 32, "synthetic_n": 40}, "model": {"width": 4, "depth": 2},
        "train": {"iterations": 2, "val_every": 2, "batch_size": 4, "tensorboard": False},
        "eval": {"overlays": 0, "save_predictions": False}}


def _grid(tmp_path: Path, name: str, seeds: list[int], **keys) -> dict:
    base = json.loads(json.dumps(BASE))
    base["data"]["cache_dir"] = str(tmp_path / "cache")
    g = {"name": name, "out": str(tmp_path / name), "report": str(tmp_path / f"{name}_report"), "workers": 1,
         "base": base, "datasets": ["synthetic"], "budgets": [20], "seeds": seeds,
         "methods": [{"label": "sup", "method": {"name": "supervised"}}]}
    g.update(keys)
    return g


def _fake_pool(monkeypatch, seconds: float = 0.0) -> list[tuple]:
    """Training and reports replaced by recorders: what ran, in which order, with what threads;
    each fake run says it trained for `seconds`."""
    log: list[tuple] = []

    def fake_run(config, threads):
        out = Path(config["out"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text("{}")
        log.append(("run", str(out), threads))
        return str(out), "ok", seconds

    def fake_report(g):
        log.append(("report", g["name"]))
        return g["report"]

    monkeypatch.setattr(experiments, "_run_timed", fake_run)
    monkeypatch.setattr(experiments, "write_grid_report", fake_report)
    return log


@pytest.fixture
def events(monkeypatch):
    return _fake_pool(monkeypatch)


def test_first_grid_runs_first_and_each_report_follows_its_own_runs(tmp_path, events):
    a = _grid(tmp_path, "a", [0, 1], threads=1)
    b = _grid(tmp_path, "b", [0], threads=2)
    res = experiments.run_grids([a, b], progress=False, log=lambda *_: None)
    run = lambda g, s: ("run", str(tmp_path / g / "synthetic" / "sup-unet" / "b20" / f"s{s}"))
    assert [e[:2] for e in events] == [run("a", 0), run("a", 1), ("report", "a"), run("b", 0), ("report", "b")]
    assert [e[2] for e in events if e[0] == "run"] == [1, 1, 2]  # each run keeps its own grid's threads
    assert [(r["total"], r["ran"], r["failed"], r["report"]) for r in res] == \
        [(2, 2, [], a["report"]), (1, 1, [], b["report"])]
    # again: nothing to train, both reports rewritten at once
    events.clear()
    assert [r["ran"] for r in experiments.run_grids([a, b], progress=False, log=lambda *_: None)] == [0, 0]
    assert events == [("report", "a"), ("report", "b")]


def test_a_run_two_grids_share_trains_once_and_counts_for_both(tmp_path, events):
    a = _grid(tmp_path, "a", [0, 1])
    b = _grid(tmp_path, "b", [1, 2], out=a["out"])  # same folder: seed 1 is the same run
    res = experiments.run_grids([a, b], progress=False, log=lambda *_: None)
    runs = [e[1] for e in events if e[0] == "run"]
    assert [Path(r).name for r in runs] == ["s0", "s1", "s2"]
    assert [(r["total"], r["ran"]) for r in res] == [(2, 2), (2, 2)]
    assert events.index(("report", "a")) < len(events) - 1  # a's report did not wait for b's own run
    assert events[-1] == ("report", "b")


def test_a_run_two_grids_list_with_different_configs_is_refused_before_anything(tmp_path, events):
    a = _grid(tmp_path, "a", [0])
    b = _grid(tmp_path, "b", [0], out=a["out"])
    b["base"]["train"]["iterations"] = 3
    with pytest.raises(ConfigError, match=r"grids 'a' and 'b' with different configs \(train.iterations"):
        experiments.run_grids([a, b], progress=False, log=lambda *_: None)
    assert events == [] and not Path(a["out"]).exists()


def test_a_locked_grid_folder_refuses_the_pool_before_any_run(tmp_path, events):
    from scarce.utils.lock import GRID_LOCK_NAME, FolderLockedError, lock_folder

    a, b = _grid(tmp_path, "a", [0]), _grid(tmp_path, "b", [0])
    with lock_folder(b["out"], GRID_LOCK_NAME, what="grid folder"):
        with pytest.raises(FolderLockedError, match="grid folder"):
            experiments.run_grids([a, b], progress=False, log=lambda *_: None)
    assert events == [] and not (Path(a["out"]) / "synthetic").exists()
    assert not (Path(a["out"]) / ".scarce-grid.lock").exists()  # a's lock was released again


def test_a_failing_report_does_not_stop_the_next_grid(tmp_path, events, monkeypatch):
    def report(g):
        events.append(("report", g["name"]))
        if g["name"] == "a":
            raise ValueError("broken report")
        return g["report"]

    monkeypatch.setattr(experiments, "write_grid_report", report)
    lines: list[str] = []
    with pytest.raises(ValueError, match="broken report"):
        experiments.run_grids([_grid(tmp_path, "a", [0]), _grid(tmp_path, "b", [0])], progress=False,
                              log=lines.append)
    assert [e[0] for e in events] == ["run", "report", "run", "report"]
    assert any("the report of grid a failed" in ln for ln in lines)


def test_cli_two_grids_dry_run_then_train_and_report(tmp_path, capsys):
    paths = []
    for name, seeds in (("a", [0]), ("b", [0])):
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump(_grid(tmp_path, name, seeds)))
        paths.append(str(p))
    assert main(["experiment", *paths, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "grid a: 1 runs, 0 finished, 1 to do" in out and "grid b: 1 runs, 0 finished, 1 to do" in out
    assert not (tmp_path / "a").exists()
    assert main(["experiment", *paths]) == 0
    out, err = capsys.readouterr()
    assert f"scarce: see where the runs stand with: scarce status {paths[0]} {paths[1]}\n" in err
    for name in ("a", "b"):
        assert (tmp_path / name / "synthetic" / "sup-unet" / "b20" / "s0" / "metrics.json").exists()
        assert f"report: {tmp_path / f'{name}_report'}/results.md" in out
        assert (tmp_path / f"{name}_report" / "results.md").exists()


def test_log_line_gives_each_runs_own_time_beside_the_grids(tmp_path, monkeypatch):
    """A run's line says how long *it* trained, not how long since the grid started (which, with
    several workers, counts the time the run waited in the queue)."""
    _fake_pool(monkeypatch, seconds=1234.0)
    lines: list[str] = []
    experiments.run_grids([_grid(tmp_path, "a", [0])], progress=False, log=lines.append)
    done = [ln for ln in lines if "[1/1]" in ln]
    assert len(done) == 1 and ": ok (run 1234s, grid " in done[0], lines
