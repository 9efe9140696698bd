"""The engine's data streams: a checkpointed sampler per stream, the unlabelled pool
(images only — masks never read, never overlapping validation or test images) and the
closure-based optimiser step."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scarce.engine.method import Batch, Method, TrainContext
from scarce.engine.streams import Stream
from scarce.engine.trainer import Trainer
from scarce.methods import METHODS
from tests.tiny import tiny_config, tiny_run_data


# ----------------------------------------------------------------------------- Stream

def test_stream_epochs_cover_every_item_and_span_batches():
    s = Stream(5, seed=0, batch_size=3)
    drawn = torch.cat([s.next_indices() for _ in range(5)]).tolist()  # 15 = 3 epochs of 5
    for e in range(3):
        assert sorted(drawn[5 * e:5 * e + 5]) == [0, 1, 2, 3, 4]


def test_stream_resume_is_exact():
    a = Stream(7, seed=3, batch_size=4)
    for _ in range(3):
        a.next_indices()
    b = Stream(7, seed=99, batch_size=4)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(a.next_indices(), b.next_indices()) for _ in range(6))


def test_stream_shards_one_global_order_across_ranks():
    ranks = [Stream(10, seed=1, batch_size=2, rank=r, world_size=2) for r in range(2)]
    one = Stream(10, seed=1, batch_size=4)
    for _ in range(4):
        assert torch.equal(torch.cat([r.next_indices() for r in ranks]), one.next_indices())


# ----------------------------------------------------------------------------- a probe method

class _ProbeConfig:
    pass


@pytest.fixture()
def probe():
    """A minimal unlabelled-stream method registered for the test: trains on the labelled batch
    plus a consistency term on the unlabelled batch; records what it was given."""
    from dataclasses import dataclass

    @dataclass
    class ProbeConfig:
        unlabelled_batch: int = 3

    class Probe(Method):
        Config = ProbeConfig
        name = "stream_probe"
        streams = ("labelled", "unlabelled")
        seen: list[list[int]] = []

        def unlabelled_batch_size(self) -> int:
            return self.mcfg.unlabelled_batch

        def training_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
            assert batch.unlabelled is not None and batch.unlabelled.shape[0] == self.mcfg.unlabelled_batch
            Probe.seen.append(batch.unlabelled_index.tolist())
            self.model.train()
            loss = self.ctx.loss_fn(self.model(batch.images), batch.masks)
            loss = loss + self.model(batch.unlabelled).pow(2).mean() * 0.01
            self.ctx.step(loss, self.optimizer)
            return {"loss": loss.detach()}

    METHODS._items["stream_probe"] = Probe
    yield Probe
    METHODS._items.pop("stream_probe", None)
    Probe.seen.clear()


def test_unlabelled_stream_feeds_batches_and_resumes_identically(tmp_path, probe):
    data = tiny_run_data(n_unlabelled=7)
    a = Trainer(tiny_config(tmp_path / "a", {"name": "stream_probe"}, iterations=6), data, tmp_path / "a")
    a.fit()
    full = list(probe.seen)
    assert len(full) == 6 and sorted(sum(full[:2], [])[:6]) == sorted(set(sum(full[:2], [])[:6]))
    probe.seen.clear()
    b = Trainer(tiny_config(tmp_path / "b", {"name": "stream_probe"}, iterations=6), data, tmp_path / "b")
    b.fit(max_steps=2)  # "killed" after a validation (val_every=2)
    c = Trainer(tiny_config(tmp_path / "b", {"name": "stream_probe"}, iterations=6), data, tmp_path / "b")
    c.fit(resume=True)
    assert probe.seen == full  # same unlabelled batches in the same order
    for (k, va), vb in zip(a.method.model.state_dict().items(), c.method.model.state_dict().values()):
        assert torch.equal(va, vb), k
    assert torch.equal(a.unlabelled.perm, c.unlabelled.perm) and a.unlabelled.pos == c.unlabelled.pos


def test_unlabelled_method_without_pool_is_one_clear_error(tmp_path, probe):
    from scarce.data.types import DataError

    with pytest.raises(DataError, match="unlabelled images"):
        Trainer(tiny_config(tmp_path, {"name": "stream_probe"}, iterations=2), tiny_run_data(), tmp_path)


def test_labelled_only_methods_draw_exactly_as_before(tmp_path):
    """The labelled stream replays the pre-stream sampler: same permutations from the same seed."""
    t = Trainer(tiny_config(tmp_path, {"name": "supervised"}, iterations=2), tiny_run_data(), tmp_path)
    g = torch.Generator().manual_seed(t.cfg.train.seed)
    perm = torch.randperm(len(t.data.train), generator=g)
    assert torch.equal(t.next_batch().index, perm[:4]) and torch.equal(t.next_batch().index, perm[4:8])
    assert t.unlabelled is None and t.next_batch().unlabelled is None


# ----------------------------------------------------------------------------- closure step

def test_closure_step_equals_tensor_step_and_reaches_two_pass_optimisers(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    ctx = TrainContext(tiny_config(tmp_path), tiny_run_data(), tmp_path, torch.device("cpu"),
                       torch.Generator(), lambda a, b: a)
    nets = [torch.nn.Linear(3, 1) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.SGD(n.parameters(), lr=0.1) for n in nets]
    ctx.step(((nets[0](x) - y) ** 2).mean(), opts[0])
    ctx.step(lambda: ((nets[1](x) - y) ** 2).mean(), opts[1])
    assert all(torch.equal(p, q) for p, q in zip(nets[0].parameters(), nets[1].parameters()))

    calls = []

    class TwoPass(torch.optim.SGD):
        needs_closure = True

        def step(self, closure=None):
            calls.append(float(closure().detach()))  # the second evaluation (e.g. SAM at θ + ε)
            return super().step()

    net = torch.nn.Linear(3, 1)
    opt = TwoPass(net.parameters(), lr=0.1)
    first = ctx.step(lambda: ((net(x) - y) ** 2).mean(), opt)
    assert len(calls) == 1 and calls[0] == pytest.approx(float(first))


# ----------------------------------------------------------------------------- the pool on a folder

def _folder(root: Path, n: int = 30, size: int = 24, seed: int = 0) -> Path:
    d = root / "ds"
    (d / "images").mkdir(parents=True)
    (d / "masks").mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        m = np.zeros((size, size), np.uint8)
        m[4 + i % 8:14 + i % 8, 5:15] = 255
        img = (rng.random((size, size, 3)) * 60 + (m[..., None] > 0) * 150).astype(np.uint8)
        Image.fromarray(img).save(d / "images" / f"im{i:02d}.png")
        Image.fromarray(m).save(d / "masks" / f"im{i:02d}.png")
    return d


def _data_cfg(folder: Path, **kw):
    from scarce.config import load_config

    sets = [f"data.dataset={folder}", "data.size=16", "data.budget=10"] + [f"data.{k}={v}" for k, v in kw.items()]
    return load_config(sets=sets).data


def test_pool_is_the_rest_of_the_training_images_and_never_val_or_test(tmp_path):
    from scarce.data.load import prepare_run_data

    folder = _folder(tmp_path)
    data = prepare_run_data(_data_cfg(folder), seed=0, with_unlabelled=True)
    pool, split = set(data.unlabelled.stems), data.split
    assert pool.isdisjoint(split.train) and pool.isdisjoint(split.val) and pool.isdisjoint(split.test)
    assert len(pool) == split.pool_size - len(split.train) - len(split.val)
    assert data.unlabelled.images.shape == (len(pool), 3, 16, 16) and set(data.unlabelled.domains) == {"ds"}
    few = prepare_run_data(_data_cfg(folder, unlabelled=3), seed=0, with_unlabelled=True)
    assert len(few.unlabelled) == 3 and set(few.unlabelled.stems) <= pool


def test_unlabelled_masks_are_never_read(tmp_path):
    """Corrupt every pool image's mask: loading (and so training) is unchanged; delete them: the
    images still serve as unlabelled data (images/ may hold images without masks). An
    unregistered folder gets data.num_classes (else the class count is inferred from all masks)."""
    from scarce.data.load import prepare_run_data

    folder = _folder(tmp_path)
    ref = prepare_run_data(_data_cfg(folder, num_classes=2), seed=0, with_unlabelled=True)
    for s in ref.unlabelled.stems:
        (folder / "masks" / f"{s}.png").write_bytes(b"not a png")
    again = prepare_run_data(_data_cfg(folder, num_classes=2, cache_dir=str(tmp_path / "c")), seed=0,
                             with_unlabelled=True)
    assert again.unlabelled.stems == ref.unlabelled.stems
    assert torch.equal(again.unlabelled.images, ref.unlabelled.images)
    assert torch.equal(again.train.images, ref.train.images)
    for s in ref.unlabelled.stems:
        (folder / "masks" / f"{s}.png").unlink()
    gone = prepare_run_data(_data_cfg(folder, num_classes=2), seed=0, with_unlabelled=True)
    assert set(ref.unlabelled.stems) <= set(gone.unlabelled.stems)


def test_an_ood_dataset_in_the_pool_is_tested_on_its_test_part_only(tmp_path):
    from scarce.data.load import prepare_run_data
    from scarce.data.types import DataError

    other = _folder(tmp_path / "o", seed=1)  # other images (a copy of the run's own would be left out)
    cfg = _data_cfg(_folder(tmp_path), unlabelled=f"[ds,{other}]")
    data = prepare_run_data(cfg, seed=0, with_unlabelled=True)
    assert set(data.unlabelled.domains) == {"ds"}  # both folders are named ds: one domain name each
    assert len(data.unlabelled) > 30  # the run's pool plus the other folder's training part
    with pytest.raises(DataError, match="test part"):
        prepare_run_data(_data_cfg(_folder(tmp_path / "p"), unlabelled="[synthetic_ood:test]"), seed=0,
                         with_unlabelled=True)


def test_registered_ood_set_in_the_pool_uses_its_test_part(tmp_path):
    from scarce.config import load_config
    from scarce.data.load import prepare_run_data

    cfg = load_config(sets=["data.dataset=synthetic", "data.size=16", "data.budget=10", "data.synthetic_n=40",
                            f"data.cache_dir={tmp_path}", "data.unlabelled=[synthetic,synthetic_ood]"]).data
    data = prepare_run_data(cfg, seed=0, with_unlabelled=True)
    assert "synthetic_ood:test" in data.tests and "synthetic_ood" not in data.tests
    ood_pool = {s for s, d in zip(data.unlabelled.stems, data.unlabelled.domains) if d == "synthetic_ood"}
    assert ood_pool and ood_pool.isdisjoint(data.tests["synthetic_ood:test"].stems)


def test_an_explicit_pool_changes_the_ood_sets_of_labelled_only_runs_too(tmp_path):
    """A supervised reference row of a multi-domain grid is scored on the same test images."""
    from scarce.config import load_config
    from scarce.data.load import prepare_run_data

    cfg = load_config(sets=["data.dataset=synthetic", "data.size=16", "data.budget=10", "data.synthetic_n=40",
                            f"data.cache_dir={tmp_path}", "data.unlabelled=[synthetic,synthetic_ood]"]).data
    sup = prepare_run_data(cfg, seed=0)  # a labelled-only method: no pool loaded
    assert sup.unlabelled is None and "synthetic_ood:test" in sup.tests and "synthetic_ood" not in sup.tests
