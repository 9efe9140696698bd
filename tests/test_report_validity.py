"""`scarce report` says what its numbers are: an unknown --metric is an error, finished runs
without test sets are listed (not "no finished run"), and a cell whose seeds trained in
different set-ups is marked with a footnote naming the runs and what differs.

Run folders are written by hand (config.yaml, metrics.json, environment.json): no training.
Expected numbers are computed by hand in the comments.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scarce.cli import main
from tests.test_errors_ux import _one_line_error as one_line_error
from scarce.config import ConfigError
from scarce.reports.report import write_report
from scarce.utils.environment import ENVIRONMENT_FILE


def env(**over):
    e = {"python": "3.11.7", "os": "Linux 6", "cpu": "Xeon A", "cpu_count": 2, "threads": 1, "device": "cpu",
         "world_size": 1, "packages": {"torch": "2.13.0+cpu", "numpy": "2.1.0"}, "scarce": "0.1.0",
         "scarce_commit": "abc", "host": "vm"}
    e.update(over)
    return e


def write_run(folder: Path, method: str, seed: int, dice: float | None, envs=None, dataset: str = "kvasir_seg",
              best_val: float = 0.8123, jaccard: bool = True) -> None:
    """A finished run of ``method`` (row ``<method>-unet``, budget 40): scored on the ID set
    (Dice ``dice``) and one OOD set (``dice - 0.2``), or — ``dice=None`` — trained with
    ``data.test_sets=[]`` (``"tests": {}``, as ``train_run`` writes it)."""
    folder.mkdir(parents=True)
    cfg = {"data": {"dataset": dataset, "budget": 40}, "train": {"seed": seed}, "model": {"name": "unet"},
           "method": {"name": method}}
    if dice is None:
        cfg["data"]["test_sets"] = []
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    tests = {}
    if dice is not None:
        for name, d in ((dataset, dice), ("cvc_clinicdb", dice - 0.2)):
            tests[name] = {"dice_mean": d, "n": 5, **({"jaccard_mean": d - 0.1} if jaccard else {})}
    (folder / "metrics.json").write_text(json.dumps({"best_val": best_val, "best_step": 200, "steps": 300,
                                                     "stopped_early": False, "tests": tests}))
    if envs is not None:
        (folder / ENVIRONMENT_FILE).write_text(json.dumps({"environments": envs}))




# ------------------------------------------------------------------------------ unknown --metric

@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "sup" / "s0", "supervised", 0, 0.70)
    write_run(root / "sup" / "s1", "supervised", 1, 0.72)
    return root


def test_unknown_metric_is_a_one_line_error_and_writes_nothing(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(runs), "-o", str(out), "--metric", "foo"]) == 2
    line = one_line_error(capsys)
    assert "'foo'" in line and "dice, jaccard" in line and "nothing written" in line
    assert not out.exists()


def test_unknown_metric_suggests_the_close_one(runs, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown metric 'Dice' \(did you mean 'dice'\?\); choose one of "
                                          r"dice, jaccard \(recorded by the runs under"):
        write_report(runs, tmp_path / "rep", metric="Dice", require_runs=True)
    assert not (tmp_path / "rep").exists()


def test_metric_known_but_not_recorded_is_refused(runs, tmp_path):
    # accuracy is one of scarce's metrics, but these runs did not record it: the table would be empty
    with pytest.raises(ConfigError, match="metric 'accuracy' was not recorded by any run under"):
        write_report(runs, tmp_path / "rep", metric="accuracy", require_runs=True)
    assert not (tmp_path / "rep").exists()


def test_metric_missing_for_one_dataset_names_it(runs, tmp_path):
    write_run(runs / "other" / "s0", "supervised", 0, 0.9, dataset="montgomery", jaccard=False)
    with pytest.raises(ConfigError, match=r"metric 'jaccard' was not recorded by the runs of dataset "
                                          r"'montgomery' .*\(they recorded: dice\)"):
        write_report(runs, tmp_path / "rep", metric="jaccard", require_runs=True)
    assert not (tmp_path / "rep").exists()
    # a metric every dataset recorded is fine: 0.70, 0.72 → 0.710 ± 0.014
    md = write_report(runs, tmp_path / "rep", metric="dice", require_runs=True).read_text()
    assert "| supervised-unet | **0.710 ± 0.014** |" in md


# ------------------------------------------------------------------- runs without test sets

def test_runs_trained_without_test_sets_are_listed_with_their_validation_score(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root / "tune" / "s0", "supervised", 0, None, best_val=0.8123)
    write_run(root / "tune" / "s1", "supervised", 1, None, best_val=0.7951)
    out = tmp_path / "rep"
    with pytest.warns(UserWarning, match="2 finished run.s. have no test-set results") as w:
        assert main(["report", str(root), "-o", str(out)]) == 0
    msg = str(w[0].message)
    assert (root / "tune" / "s0").as_posix() in msg and (root / "tune" / "s1").as_posix() in msg
    assert "Traceback" not in capsys.readouterr().err
    md = (out / "results.md").read_text()
    assert "no finished run" not in md.lower()
    assert "was scored on a test set, so there is no results table" in md
    assert "## Runs without test-set results" in md
    assert f"| `{(root / 'tune' / 's0').as_posix()}` | kvasir_seg | supervised-unet | 40 | 0 | 0.812 (dice) | 200 |" in md
    assert f"| `{(root / 'tune' / 's1').as_posix()}` | kvasir_seg | supervised-unet | 40 | 1 | 0.795 (dice) | 200 |" in md


def test_run_without_test_sets_beside_scored_runs(runs, tmp_path):
    write_run(runs / "tune" / "s0", "fixmatch", 0, None, best_val=0.9)
    with pytest.warns(UserWarning, match="no test-set results .* in no table: .*tune/s0"):
        md = write_report(runs, tmp_path / "rep", require_runs=True).read_text()
    # 0.70/0.72 → 0.710 ± 0.014; OOD 0.50/0.52 → 0.510 ± 0.014; per-run means 0.60/0.62 → 0.610 ± 0.014
    assert "| supervised-unet | **0.710 ± 0.014** | **0.510 ± 0.014** | **0.610 ± 0.014** |" in md
    assert "fixmatch-unet |" not in md.split("## Runs without test-set results")[0]  # in no table
    assert f"| `{(runs / 'tune' / 's0').as_posix()}` | kvasir_seg | fixmatch-unet | 40 | 0 | 0.900 (dice) | 200 |" in md


def test_run_evaluated_after_training_without_test_sets_is_in_the_table(runs, tmp_path):
    # `scarce evaluate RUN --test-sets kvasir_seg` writes RUN/eval/metrics.json beside the empty run result
    write_run(runs / "fm" / "s0", "fixmatch", 0, None)
    (runs / "fm" / "s0" / "eval").mkdir()
    (runs / "fm" / "s0" / "eval" / "metrics.json").write_text(
        json.dumps({"kvasir_seg": {"dice_mean": 0.75, "n": 5}}))
    md = write_report(runs, tmp_path / "rep", metric="dice", require_runs=True).read_text()
    assert "| fixmatch-unet | **0.750** |" in md
    assert "Runs without test-set results" not in md


# ------------------------------------------------------------------- mixed-environment marks

def mixed_runs(root: Path) -> None:
    write_run(root / "sup" / "s0", "supervised", 0, 0.70, [env()])
    write_run(root / "sup" / "s1", "supervised", 1, 0.72, [env(cpu="EPYC")])
    write_run(root / "sup" / "s2", "supervised", 2, 0.74)  # no environment.json: unknown
    write_run(root / "fm" / "s0", "fixmatch", 0, 0.75, [env()])
    write_run(root / "fm" / "s1", "fixmatch", 1, 0.76, [env(), env(threads=2)])  # resumed with 2 threads
    write_run(root / "cps" / "s0", "cps", 0, 0.59, [env()])
    write_run(root / "cps" / "s1", "cps", 1, 0.63,
              [env(device="cuda: NVIDIA H100", packages={"torch": "2.13.0+cpu", "numpy": "2.2.0"})])
    # only host, OS, Python, CPU count and scarce's commit differ: nothing that changes the numbers
    write_run(root / "mt" / "s0", "mean_teacher", 0, 0.70, [env()])
    write_run(root / "mt" / "s1", "mean_teacher", 1, 0.74,
              [env(host="other", os="Linux 7", python="3.12.1", cpu_count=8, scarce_commit="def")])


def test_cells_mixing_set_ups_are_marked_with_a_footnote(tmp_path):
    root = tmp_path / "runs"
    mixed_runs(root)
    md = write_report(root, tmp_path / "rep", metric="dice").read_text()
    # ID, OOD (ID − 0.2), mean over both per run (ID − 0.1), mean ± sample std over seeds:
    # cps 0.59/0.63 → 0.610 ± 0.028 (s = 0.02·√2); fixmatch 0.75/0.76 → 0.755 ± 0.007 (best);
    # mean teacher 0.70/0.74 → 0.720 ± 0.028; supervised 0.70/0.72/0.74 → 0.720 ± 0.020
    assert "| cps-unet | 0.610 ± 0.028 † | 0.410 ± 0.028 † | 0.510 ± 0.028 † |" in md
    assert "| fixmatch-unet | **0.755 ± 0.007** † | **0.555 ± 0.007** † | **0.655 ± 0.007** † |" in md
    assert "| mean_teacher-unet | 0.720 ± 0.028 | 0.520 ± 0.028 | 0.620 ± 0.028 |" in md
    assert "| supervised-unet | 0.720 ± 0.020 † | 0.520 ± 0.020 † | 0.620 ± 0.020 † |" in md
    assert "† Runs of this cell trained in different set-ups" in md
    notes = [ln for ln in md.splitlines() if ln.startswith("- `")]
    assert notes == [
        "- `cps-unet @ 40` — device: cpu (seed 0), cuda: NVIDIA H100 (seed 1); numpy: 2.1.0 (seed 0), 2.2.0 (seed 1)",
        "- `fixmatch-unet @ 40` — threads: 1 (seed 0), 1 → 2 (seed 1)",
        "- `supervised-unet @ 40` — CPU: Xeon A (seed 0), EPYC (seed 1); not recorded: seed 2",
    ]
    # the table's own file carries the same marks and footnote
    own = (tmp_path / "rep" / "kvasir_seg_dice.md").read_text()
    assert "| supervised-unet | 0.720 ± 0.020 † |" in own and notes[2] in own


def test_runs_without_environment_records_are_not_marked(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "sup" / "s0", "supervised", 0, 0.70)
    write_run(root / "sup" / "s1", "supervised", 1, 0.72)
    write_run(root / "sup" / "s2", "supervised", 2, 0.74, [env()])
    (root / "sup" / "s1" / ENVIRONMENT_FILE).write_text("{not json")  # unreadable: unknown, no crash
    write_run(root / "fm" / "s0", "fixmatch", 0, 0.75, [env()])
    write_run(root / "fm" / "s1", "fixmatch", 1, 0.76, [env(cpu="EPYC")])
    md = write_report(root, tmp_path / "rep", metric="dice").read_text()
    # supervised: one recorded set-up, two unknown → no mark (0.70/0.72/0.74 → 0.720 ± 0.020);
    # fixmatch: two CPUs → marked (0.75/0.76 → 0.755 ± 0.007, best)
    assert "| supervised-unet | 0.720 ± 0.020 | 0.520 ± 0.020 | 0.620 ± 0.020 |" in md
    assert "| fixmatch-unet | **0.755 ± 0.007** † | **0.555 ± 0.007** † | **0.655 ± 0.007** † |" in md
    assert [ln for ln in md.splitlines() if ln.startswith("- `")] == [
        "- `fixmatch-unet @ 40` — CPU: Xeon A (seed 0), EPYC (seed 1)"]


def test_html_tables_carry_the_same_marks(tmp_path):
    from scarce.reports.html import write_html_report

    root = tmp_path / "runs"
    mixed_runs(root)
    page = write_html_report(root, tmp_path / "rep", metric="dice", reference="supervised-unet",
                             browser_images=0).read_text()
    stats = page[page.index('<table class="stats"'):page.index('<section id="report"')]
    rows = {r.split("</th>")[0]: r for r in stats.split("<tr><th>")[2:]}  # header row skipped
    assert rows["supervised-unet"].count('class="env-mark"') == 2  # ID and OOD cell
    assert rows["fixmatch-unet"].count('class="env-mark"') == 2 and rows["cps-unet"].count('class="env-mark"') == 2
    assert 'class="env-mark"' not in rows["mean_teacher-unet"]
    assert "<li><code>supervised-unet @ 40</code> — CPU: Xeon A (seed 0), EPYC (seed 1); not recorded: seed 2</li>" \
        in stats
