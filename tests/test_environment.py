"""environment.json: what a run trained in, kept through resume and records, and named by the report
when one dataset's runs come from different environments."""
import json

import pytest
import yaml

from scarce.reports.environments import UNRECORDED, environment_groups, environment_section
from scarce.reports.report import write_report
from scarce.reports.tables import collect_runs
from scarce.utils.environment import (ENVIRONMENT_FILE, describe_differences, environment_info, fingerprint,
                                      read_environments, record_environment)


def env(**over):
    e = {"python": "3.11.7", "os": "Linux 6", "cpu": "Xeon A", "cpu_count": 2, "threads": 1, "device": "cpu",
         "world_size": 1, "packages": {"torch": "2.13.0+cpu", "kornia": "0.9.0"}, "scarce": "0.1.0",
         "scarce_commit": "abc", "host": "vm"}
    e.update(over)
    return e


def test_environment_info_describes_this_process():
    import torch

    e = environment_info("cpu")
    assert e["threads"] == torch.get_num_threads() and e["device"] == "cpu" and e["world_size"] == 1
    assert e["packages"]["torch"] == torch.__version__
    assert isinstance(e["cpu"], str) and e["cpu"]
    json.dumps(e)  # JSON-able
    assert "host" not in fingerprint(e) and "scarce_commit" not in fingerprint(e)


def test_record_appends_only_a_different_environment(tmp_path):
    assert read_environments(tmp_path) == []
    assert record_environment(tmp_path, env())
    assert not record_environment(tmp_path, env(host="other", scarce_commit="def"))  # same set-up: nothing added
    assert record_environment(tmp_path, env(threads=2))  # resumed with 2 threads
    assert [e["threads"] for e in read_environments(tmp_path)] == [1, 2]
    assert record_environment(tmp_path, env(), restart=True)  # started over: earlier entries trained nothing
    assert [e["threads"] for e in read_environments(tmp_path)] == [1]
    (tmp_path / ENVIRONMENT_FILE).write_text("{not json")
    assert read_environments(tmp_path) == []


def test_describe_differences_names_only_what_differs():
    d = describe_differences({"A": env(), "B": env(cpu="EPYC", packages={"torch": "2.13.0+cpu", "kornia": "0.8.0"},
                                                     host="x")})
    assert d == {"A": {"cpu": "Xeon A", "kornia": "0.9.0"}, "B": {"cpu": "EPYC", "kornia": "0.8.0"}}


def _tiny_sets(out):
    return [f"out={out}", "data.size=32", "data.synthetic_n=40", "data.budget=20", "model.width=4",
            "model.depth=2", "train.batch_size=4", "train.val_every=2", "train.progress=false",
            "train.tensorboard=false", "eval.overlays=0", "eval.save_predictions=false"]


def test_train_records_its_environment_and_a_resume_elsewhere(tmp_path):
    import torch

    from scarce.api import train_run
    from scarce.config import load_config

    out = tmp_path / "run"
    before = torch.get_num_threads()
    try:
        train_run(load_config(sets=_tiny_sets(out) + ["train.iterations=2", "train.threads=1"]))
        envs = read_environments(out)
        assert len(envs) == 1 and envs[0]["threads"] == 1 and envs[0]["device"] == "cpu"
        # resumed for more steps with another thread count (a runtime key): a second entry
        train_run(load_config(sets=_tiny_sets(out) + ["train.iterations=2", "train.threads=2"]), resume=True)
        assert len(read_environments(out)) == 1  # finished run: --resume only reads its results
        (out / "metrics.json").unlink()
        train_run(load_config(sets=_tiny_sets(out) + ["train.iterations=2", "train.threads=2"]), resume=True)
        assert [e["threads"] for e in read_environments(out)] == [1, 2]
    finally:
        torch.set_num_threads(before)


def write_run(folder, row, seed, dice, envs=None):
    folder.mkdir(parents=True)
    cfg = {"data": {"dataset": "kvasir_seg", "budget": 40}, "train": {"seed": seed}, "model": {"name": "unet"},
           "method": {"name": row}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "metrics.json").write_text(json.dumps({"kvasir_seg": {"dice_mean": dice, "n": 10}}))
    if envs is not None:
        (folder / ENVIRONMENT_FILE).write_text(json.dumps({"environments": envs}))


def test_report_names_mixed_environments(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "sup" / "s0", "supervised", 0, 0.70, [env()])
    write_run(root / "sup" / "s1", "supervised", 1, 0.71, [env()])
    write_run(root / "fm" / "s0", "fixmatch", 0, 0.75, [env(cpu="EPYC")])
    write_run(root / "fm" / "s1", "fixmatch", 1, 0.74, [env(), env(cpu="EPYC")])  # resumed on the other machine
    write_run(root / "mt" / "s0", "mean_teacher", 0, 0.72)  # trained before environments were recorded
    df = collect_runs(root)
    groups = environment_groups(df, root, "kvasir_seg")
    assert [g["label"] for g in groups] == ["A", "B", "C", UNRECORDED]
    assert [g["runs"] for g in groups] == [[("fixmatch-unet", 40, 0)], [("fixmatch-unet", 40, 1)],
                                           [("supervised-unet", 40, 0), ("supervised-unet", 40, 1)],
                                           [("mean_teacher-unet", 40, 0)]]
    lines = environment_section(df, root, "kvasir_seg")
    text = "\n".join(lines)
    assert "2 recorded environments and 1 run(s) without a record" in text  # B spans both
    assert "| environment | runs | cpu |" in text  # only the field that differs
    assert "| B | fixmatch-unet @ 40: seed 1 | Xeon A → EPYC |" in text
    assert "| C | supervised-unet @ 40: seeds 0, 1 | Xeon A |" in text
    md = write_report(root, tmp_path / "rep").read_text()
    assert "kvasir_seg — training environments" in md


def test_report_is_silent_when_one_environment_or_none_recorded(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "sup" / "s0", "supervised", 0, 0.70, [env()])
    write_run(root / "fm" / "s0", "fixmatch", 0, 0.75, [env(host="elsewhere")])  # host is not the set-up
    assert environment_section(collect_runs(root), root, "kvasir_seg") == []
    bare = tmp_path / "bare"
    write_run(bare / "sup" / "s0", "supervised", 0, 0.70)
    write_run(bare / "fm" / "s0", "fixmatch", 0, 0.75)
    assert environment_section(collect_runs(bare), bare, "kvasir_seg") == []
    assert "training environments" not in write_report(root, tmp_path / "rep").read_text()


def test_one_recorded_environment_beside_unrecorded_runs_says_what_it_was(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "sup" / "s0", "supervised", 0, 0.70, [env()])
    write_run(root / "mt" / "s0", "mean_teacher", 0, 0.72)
    text = "\n".join(environment_section(collect_runs(root), root, "kvasir_seg"))
    assert "| environment | runs | cpu | threads | device | torch |" in text
    assert "| A | supervised-unet @ 40: seed 0 | Xeon A | 1 | cpu | 2.13.0+cpu |" in text
    assert f"| {UNRECORDED} | mean_teacher-unet @ 40: seed 0 |" in text


def test_records_keep_the_environment(tmp_path):
    from scarce.reports.records import export_records

    root = tmp_path / "runs"
    write_run(root / "sup" / "s0", "supervised", 0, 0.70, [env()])
    write_run(root / "fm" / "s0", "fixmatch", 0, 0.75, [env(cpu="EPYC")])
    export_records([root], tmp_path / "rec")
    assert read_environments(tmp_path / "rec" / "fm" / "s0")[0]["cpu"] == "EPYC"
    assert "training environments" in write_report(tmp_path / "rec", tmp_path / "rep").read_text()


@pytest.mark.parametrize("bad", [{"environments": "x"}, ["x"], {"environments": [1, {"cpu": "c"}]}])
def test_malformed_environment_files_are_read_defensively(tmp_path, bad):
    (tmp_path / ENVIRONMENT_FILE).write_text(json.dumps(bad))
    assert all(isinstance(e, dict) for e in read_environments(tmp_path))


def test_cpu_generation_fields_are_recorded_and_unknown_in_older_entries(tmp_path):
    """Generic VM model names hide the CPU generation: family/model, caches and the kernel ISA are
    recorded; an entry written before they existed is not a different set-up (a resume there
    appends nothing), while a differing value is."""
    from scarce.utils.environment import environment_info, read_environments, record_environment, same_setup

    env = environment_info()
    for key in ("cpu_id", "cpu_caches", "cpu_capability"):
        assert key in env
    old = {k: v for k, v in env.items() if k not in ("cpu_id", "cpu_caches", "cpu_capability")}
    assert same_setup(old, env) and same_setup(env, old)
    assert not same_setup(env, {**env, "cpu_caches": "L2 512K"})
    record_environment(tmp_path, old, restart=True)
    assert record_environment(tmp_path, env) is False and len(read_environments(tmp_path)) == 1
    record_environment(tmp_path, env, restart=True)
    assert record_environment(tmp_path, {**env, "cpu_capability": "AVX2"}) is True
    assert len(read_environments(tmp_path)) == 2
