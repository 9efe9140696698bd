"""One shared tester parametrised over every registered method (smp BaseModelTester style):
each runs through the real Trainer, reports a finite loss, checkpoints every network it owns
and resumes to bit-identical weights."""
import dataclasses
import math

import pytest
import torch

from scarce.methods import METHODS, load_builtin_methods
from scarce.engine.trainer import Trainer
from tests.tiny import tiny_config, tiny_run_data

load_builtin_methods()
ALL = METHODS.names()

# Keep the expensive set-up phases of some methods (GAN / PCE pre-training) tiny in tests.
FAST_FIELDS = {"pretrain_iters": 2, "workers": 0, "scribbles": "synthetic:0.5"}
"""Method config fields that keep the shared tester fast (each must exist in some method's Config:
test_fast_fields_exist — a renamed field would otherwise be dropped silently)."""


def _method(name):
    cls = METHODS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)} if dataclasses.is_dataclass(cls.Config) else set()
    return {"name": name, **{k: v for k, v in FAST_FIELDS.items() if k in fields}}


def _state(trainer):
    return {f"{m}.{k}": v.clone() for m, mod in trainer.method.modules().items()
            for k, v in mod.state_dict().items()}


def test_fast_fields_exist():
    fields = {f.name for n in ALL for f in dataclasses.fields(METHODS.get(n).Config)}
    assert set(FAST_FIELDS) <= fields, sorted(set(FAST_FIELDS) - fields)


def _data(name):
    """Tiny run data; with an unlabelled pool for methods that consume one (``streams``)."""
    return tiny_run_data(n_unlabelled=6 if "unlabelled" in METHODS.get(name).streams else 0)


@pytest.mark.parametrize("name", ALL)
def test_method_trains_and_resumes_identically(tmp_path, name):
    method = _method(name)
    a = Trainer(tiny_config(tmp_path / "a", method, iterations=4), _data(name), tmp_path / "a")
    res = a.fit()
    assert res.steps == 4 and math.isfinite(res.best_score)
    rows = (tmp_path / "a" / "log.csv").read_text().splitlines()
    assert len(rows) == 5
    b = Trainer(tiny_config(tmp_path / "b", method, iterations=4), _data(name), tmp_path / "b")
    b.fit(max_steps=2)
    b2 = Trainer(tiny_config(tmp_path / "b", method, iterations=4), _data(name), tmp_path / "b")
    b2.fit(resume=True)
    sa, sb = _state(a), _state(b2)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{name}: {k} differs after resume"


def test_registry_has_the_baselines():
    assert "supervised" in ALL
    with pytest.raises(KeyError, match="Did you mean 'supervised'"):
        METHODS.get("supervized")


@pytest.mark.parametrize("name", ALL)
def test_method_stopped_by_a_signal_between_validations_resumes_identically(tmp_path, name):
    """Ctrl-C/SIGTERM checkpoints the step in flight, which is no validation step: every piece of
    a method's per-step state must be in its checkpoint, not only what validation steps leave."""
    import os
    import signal

    from scarce.utils.interrupt import Interrupted

    method = _method(name)
    a = Trainer(tiny_config(tmp_path / "a", method, iterations=5, val_every=4), _data(name), tmp_path / "a")
    a.fit()
    b = Trainer(tiny_config(tmp_path / "b", method, iterations=5, val_every=4), _data(name), tmp_path / "b")
    inner = b.method.training_step

    def step(batch, i):
        out = inner(batch, i)
        if i == 2:  # the 3rd step
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    b.method.training_step = step
    with pytest.raises(Interrupted):
        b.fit()
    b2 = Trainer(tiny_config(tmp_path / "b", method, iterations=5, val_every=4), _data(name), tmp_path / "b")
    assert b2.fit(resume=True).steps == 5
    sa, sb = _state(a), _state(b2)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{name}: {k} differs after a resume at step 3"
    assert (tmp_path / "a" / "log.csv").read_text().count("\n") == (tmp_path / "b" / "log.csv").read_text().count("\n")
