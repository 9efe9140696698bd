import pytest

from scarce.config import ConfigError, load_config, parse_overrides, save_config, load_yaml, from_dict, RunConfig, preset_names
from scarce.registry import Registry, look_up


def test_overrides_parse_yaml_values():
    d = parse_overrides(["train.iterations=50", "data.test_sets=[ph2, dermis]", "train.progress=false", "a.b.c=1e-3"])
    assert d["train"]["iterations"] == 50
    assert d["data"]["test_sets"] == ["ph2", "dermis"]
    assert d["train"]["progress"] is False
    assert d["a"]["b"]["c"] == pytest.approx(1e-3)


def test_order_defaults_preset_file_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train: {iterations: 77, batch_size: 3}\nmethod: {name: supervised, augment: flip}\n")
    cfg = load_config(f, ["train.batch_size=5"], preset="paper")
    assert cfg.train.iterations == 77          # file beats preset
    assert cfg.train.batch_size == 5           # --set beats file
    assert cfg.train.optim.name == "rmsprop"   # preset beats defaults
    assert cfg.train.optim.lr == pytest.approx(1e-5)
    assert cfg.method == {"name": "supervised", "augment": "flip"}


def test_unknown_key_did_you_mean():
    with pytest.raises(ConfigError, match="Did you mean 'iterations'"):
        load_config(sets=["train.iteratons=5"])
    with pytest.raises(ConfigError, match="expects an integer"):
        load_config(sets=["train.iterations=abc"])
    with pytest.raises(ValueError, match="Did you mean 'paper'"):
        load_config(preset="papr")


def test_roundtrip(tmp_path):
    cfg = load_config(sets=["train.iterations=12", "model.name=deeplabv3"])
    save_config(cfg, tmp_path / "config.yaml")
    again = from_dict(RunConfig, load_yaml(tmp_path / "config.yaml"))
    assert again == cfg
    assert set(preset_names()) >= {"cpu", "paper", "quality"}


def test_quality_preset_is_the_pretrained_encoder_recipe():
    """The quality preset = Lite0 U-Net with ImageNet weights, 800 iterations; the cpu preset
    stays the from-scratch width-8 U-Net; model.encoder=none gives the width-16 from-scratch
    U-Net at the quality recipe."""
    from scarce.models import EncoderUNet, UNet, model_from_config
    from scarce.validate import validate_config

    q = load_config(preset="quality")
    assert (q.model.encoder, q.model.encoder_weights, q.train.iterations) == ("efficientnet_lite0", "imagenet", 800)
    assert q.train.optim.name == "adam" and q.data.size == 128
    validate_config(q)
    net = model_from_config(q.model, 3, 2, pretrained=False)
    assert isinstance(net.net, EncoderUNet) and net.norm.mode == "imagenet"  # auto: ImageNet mean/std
    c = load_config(preset="cpu")
    assert c.preset == "cpu" and c.model.encoder is None and c.train.iterations == 400
    s = load_config(preset="quality", sets=["model.encoder=none"])
    net = model_from_config(s.model, 3, 2, pretrained=False)
    assert isinstance(net, UNet) and s.model.width == 16


def test_default_preset_is_quality_and_scarce_preset_changes_it(monkeypatch):
    """With nothing naming a preset, a run gets the quality preset (the pretrained-encoder U-Net);
    $SCARCE_PRESET (set to cpu for the whole test suite by conftest.py) changes the default but
    not an explicit --preset / YAML / --set preset; an unknown name is one error naming the
    variable. The resolved name is saved in the config."""
    from scarce.config import DEFAULT_PRESET, ENV_PRESET

    monkeypatch.delenv(ENV_PRESET, raising=False)
    c = load_config()
    assert DEFAULT_PRESET == "quality" and c.preset == "quality"
    assert c.model.encoder == "efficientnet_lite0" and c.train.iterations == 800
    monkeypatch.setenv(ENV_PRESET, "cpu")
    c = load_config()
    assert c.preset == "cpu" and c.model.encoder is None and c.train.iterations == 400
    assert load_config(preset="paper").preset == "paper"
    assert load_config({"preset": "quality"}).preset == "quality"
    assert load_config(sets=["preset=quality"]).model.encoder == "efficientnet_lite0"
    monkeypatch.setenv(ENV_PRESET, "qualty")
    with pytest.raises(ConfigError, match=r"unknown preset 'qualty' in \$SCARCE_PRESET; did you mean 'quality'"):
        load_config()
    assert load_config(preset="cpu").preset == "cpu"   # an explicit preset never reads the variable


def test_registry_did_you_mean():
    r = Registry("thing")
    r.register("unet", 1)
    r.register("deeplabv3", 2)
    assert r.get("UNet") == 1
    with pytest.raises(KeyError, match="Did you mean 'unet'"):
        r.get("unte")
    with pytest.raises(ValueError, match="Did you mean 'combine'"):
        look_up("combin", ("none", "combine"), "augmentation")


def test_import_scarce_is_lazy():
    import subprocess, sys

    code = "import sys, scarce; assert 'torch' not in sys.modules, 'import scarce imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_differences_fills_method_defaults():
    """A grid row that spells out a method default is the same run as one that does not (so grids
    can share finished runs), while a real change of a method option is still a difference."""
    from scarce.runfolder import config_differences
    from scarce.config import RunConfig, to_dict

    saved = to_dict(RunConfig())
    saved["method"] = {"name": "e2eaug"}
    same = to_dict(RunConfig())
    same["method"] = {"name": "e2eaug", "lam": 1.0, "mask_ops": ["rotate", "flip", "translate"]}
    assert config_differences(saved, same) == []
    other = to_dict(RunConfig())
    other["method"] = {"name": "e2eaug", "lam": 0.5}
    assert config_differences(saved, other) == ["method.lam"]      # named, so a refusal says what to change
    other["method"] = {"name": "separate"}
    assert config_differences(saved, other) == ["method.name"]


def test_quality_preset_method_defaults(tmp_path):
    """The quality preset trains ``supervised`` with Combine + intensity augmentation (what its
    validation chose); the user's own method keys win; other methods and presets are untouched;
    the saved config records the recipe, so it repeats the run under any preset."""
    from scarce.methods import method_spec

    q = load_config(preset="quality")
    assert q.method == {"name": "supervised", "augment": "combine", "intensity": "nnunet"}
    spec = method_spec(q)
    assert (spec.config.augment, spec.config.intensity) == ("combine", "nnunet")
    assert load_config(preset="quality", sets=["method.augment=none"]).method == {
        "name": "supervised", "augment": "none", "intensity": "nnunet"}
    f = tmp_path / "c.yaml"
    f.write_text("method: {name: supervised, intensity: none}\n")
    assert load_config(f, preset="quality").method["intensity"] == "none"   # the file beats the preset
    assert load_config(preset="quality", sets=["method.name=e2eaug"]).method == {
        "name": "e2eaug", "real_augment": "combine", "intensity": "nnunet"}       # its real half likewise
    assert load_config(preset="quality", sets=["method.name=separate"]).method == {
        "name": "separate", "real_augment": "combine", "intensity": "nnunet"}     # and Separate's
    assert load_config(preset="quality", sets=["method.name=gan_aug"]).method == {
        "name": "gan_aug", "real_augment": "combine", "intensity": "nnunet"}      # and gan_aug's
    assert load_config(preset="cpu", sets=["method.name=gan_aug"]).method == {"name": "gan_aug"}
    assert load_config(preset="cpu", sets=["method.name=e2eaug"]).method == {"name": "e2eaug"}
    assert load_config(preset="cpu").method == {"name": "supervised"}       # paper-faithful baseline
    save_config(q, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml", preset="cpu")
    assert again.method == q.method
    assert "method_defaults" not in load_yaml(tmp_path / "config.yaml")


@pytest.mark.parametrize("name", preset_names())
def test_preset_method_defaults_name_real_fields(name):
    """A typo in a shipped preset's method_defaults (method or field name) would silently never
    apply: every entry must parse against its method's Config."""
    import yaml
    from importlib import resources

    from scarce.methods import method_spec

    raw = yaml.safe_load((resources.files("scarce") / "configs" / "presets" / f"{name}.yaml").read_text())
    for method, fields_ in (raw.get("method_defaults") or {}).items():
        spec = method_spec({"name": method, **fields_})
        assert spec.as_dict()["name"] == method
        for k, v in fields_.items():
            assert getattr(spec.config, k) == v


def test_gpu_preset_refuses_a_cpu_only_machine_unless_the_device_is_named(monkeypatch):
    """The gpu preset's 512 px × 4000 iterations would take hours on a laptop: without a GPU it
    stops with one line naming the two ways out; naming the device explicitly is allowed."""
    import torch

    from scarce.validate import validate_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config(None, ["data.dataset=synthetic"], preset="gpu")
    assert (cfg.data.size, cfg.data.aspect, cfg.train.iterations) == (512, "pad", 4000)
    with pytest.raises(ConfigError, match="preset 'gpu'.*no GPU was found.*--preset quality.*train.device=cpu"):
        validate_config(cfg)
    validate_config(load_config(None, ["data.dataset=synthetic", "train.device=cpu"], preset="gpu"))
