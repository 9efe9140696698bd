"""``scarce suggest`` and ``data.selection``: planted structure the strategies must find, the
nested split's validation and test images never suggested, the CSV, the output policy, and
selection rounds that build nested labelled sets."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from scarce import suggest as S
from scarce.cli import main
from scarce.config import ConfigError, load_config
from scarce.data.types import DataError

SIZE = 32


def _planted_features(sizes: list[int], dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Tight, well-separated clusters of the given sizes: (N×dim features, cluster of each)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(len(sizes), dim, generator=g) * 5
    feats = torch.cat([c + 0.05 * torch.randn(n, dim, generator=g) for c, n in zip(centres, sizes)])
    return feats, [k for k, n in enumerate(sizes) for _ in range(n)]


def _planted_images() -> tuple[torch.Tensor, list[int]]:
    """Three kinds of 32 px RGB images (flat red, green stripes, blue checks; 6, 2 and 4 of
    them) with a little noise: (N×3×32×32 images in [0, 1], kind of each)."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    kinds = [torch.tensor([0.8, 0.1, 0.1]).view(3, 1, 1).expand(3, SIZE, SIZE),
             ((xx // 4) % 2).float().expand(3, SIZE, SIZE) * torch.tensor([0.1, 0.8, 0.1]).view(3, 1, 1),
             (((xx // 4) + (yy // 4)) % 2).float().expand(3, SIZE, SIZE) * torch.tensor([0.2, 0.2, 0.9]).view(3, 1, 1)]
    images, kind = [], []
    for k, n in enumerate([6, 2, 4]):
        for _ in range(n):
            images.append((kinds[k] + 0.05 * torch.rand(3, SIZE, SIZE, generator=g)).clamp(0, 1))
            kind.append(k)
    return torch.stack(images), kind


class MeanModel(torch.nn.Module):
    """A fake segmenter: one logit per pixel, 12 × (mean over channels − 0.5); an image at 0.5
    is as uncertain as can be, one near 0 or 1 certain. ``dropout`` adds a dropout layer."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = 3, 1, 1
        self.scale = torch.nn.Parameter(torch.tensor(12.0))
        self.drop = torch.nn.Dropout(dropout) if dropout else torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.scale * (x.mean(dim=1, keepdim=True) - 0.5))


# ---------------------------------------------------------------------------- strategies

def test_diversity_picks_one_image_per_planted_cluster():
    sizes = [9, 2, 5, 3]
    feats, cluster = _planted_features(sizes)
    stems = [f"s{i:02d}" for i in range(len(cluster))]
    for name in ("coreset", "kmeans"):
        for seed in (0, 1):
            rows = S.suggest(S.Pool(stems, torch.zeros(len(stems), 3, 4, 4), seed=seed, features=feats), 4, name)
            assert sorted(cluster[stems.index(r.stem)] for r in rows) == [0, 1, 2, 3], (name, seed)
    # uncertainty within clusters: the planted most uncertain member of each cluster
    scores = torch.rand(len(cluster), generator=torch.Generator().manual_seed(1)) * 0.5
    planted = [sum(sizes[:k]) + k % sizes[k] for k in range(len(sizes))]
    scores[planted] = torch.tensor([0.9, 0.6, 0.8, 0.7])
    picks = S.uncertain_per_cluster(feats, scores, 4)
    assert [i for i, _, _ in picks] == [planted[0], planted[2], planted[3], planted[1]]  # most uncertain first
    assert sorted(size for _, _, size in picks) == sorted(sizes)


def test_diversity_on_imagenet_features_of_planted_image_kinds():
    """The whole cold-start path (pooled ImageNet Lite0 features of decoded images): three kinds
    of images, three suggestions, one of each kind."""
    images, kind = _planted_images()
    stems = [f"img{i:02d}" for i in range(len(kind))]
    for name in ("coreset", "kmeans"):
        rows = S.suggest(S.Pool(stems, images, seed=0), 3, name)
        assert sorted(kind[stems.index(r.stem)] for r in rows) == [0, 1, 2], name


def test_uncertainty_ranks_the_planted_uncertain_image_first():
    g = torch.Generator().manual_seed(0)
    levels = [0.05, 0.95, 0.1, 0.9, 0.5, 0.15, 0.85]  # image 4 is the uncertain one
    images = torch.stack([(torch.full((3, 16, 16), v) + 0.02 * torch.rand(3, 16, 16, generator=g)).clamp(0, 1)
                          for v in levels])
    stems = [f"u{i}" for i in range(len(levels))]
    pool = S.Pool(stems, images, model=MeanModel(), features=torch.eye(len(levels)))
    rows = S.suggest(pool, 3, "uncertainty")
    assert rows[0].stem == "u4" and rows[0].score > rows[1].score
    assert "entropy" in rows[0].why and "flip" in rows[0].why
    assert S.suggest(pool, 3, "uncertainty_diversity")[0].stem == "u4"
    with pytest.raises(ConfigError, match="needs a trained model"):
        S.suggest(S.Pool(stems, images), 3, "uncertainty")


def test_uncertainty_components_and_sampling():
    certain = torch.tensor([0.0, 1.0]).view(1, 1, 2, 1, 1).expand(4, 1, 2, 2, 2)
    even = torch.full((4, 1, 2, 2, 2), 0.5)
    flipping = torch.stack([torch.tensor([1.0 - a, a]).view(2, 1, 1).expand(2, 2, 2) for a in (0.0, 1.0, 0.0, 1.0)])
    c = S.uncertainty_components(torch.cat([certain, even, flipping.unsqueeze(1)], dim=1))
    assert c["entropy"].tolist() == pytest.approx([0.0, 1.0, 1.0])
    assert c["variance"].tolist() == pytest.approx([0.0, 0.0, 0.25])
    assert c["area"].tolist() == pytest.approx([0.0, 0.0, 0.5])
    assert S.combine_uncertainty(c).tolist() == pytest.approx([0.0, 1 / 3, 1.0])
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = MeanModel().train()
    samples, how = S.prediction_samples(plain, x)
    assert how == "flip" and samples.shape == (len(S.FLIPS), 2, 2, 8, 8) and plain.training  # mode restored
    assert torch.allclose(samples[0], samples[1], atol=1e-6)  # a per-pixel model: flips change nothing
    dropped = MeanModel(dropout=0.5).eval()
    torch.manual_seed(0)
    samples, how = S.prediction_samples(dropped, x)
    assert how == "mc_dropout" and samples.shape[0] == S.MC_DROPOUT_PASSES and not dropped.training
    assert not torch.allclose(samples[0], samples[1])


def test_random_is_reproducible_by_seed():
    stems = [f"r{i:03d}" for i in range(60)]
    pool = lambda seed: S.Pool(stems, torch.zeros(60, 1, 2, 2), seed=seed)  # noqa: E731
    a = [r.stem for r in S.suggest(pool(3), 10, "random")]
    assert a == [r.stem for r in S.suggest(pool(3), 10, "random")] and len(set(a)) == 10
    assert a != [r.stem for r in S.suggest(pool(4), 10, "random")]


def test_unknown_strategy_says_did_you_mean(tmp_path, synthetic_folder, capsys):
    with pytest.raises(KeyError, match="Did you mean 'coreset'"):
        S.STRATEGIES.get("corset")
    assert main(["suggest", str(synthetic_folder), "-n", "2", "--strategy", "corset", "-o", str(tmp_path / "a.csv")]) == 2
    assert "Did you mean 'coreset'" in capsys.readouterr().err and not (tmp_path / "a.csv").exists()
    with pytest.raises(ConfigError, match="Did you mean 'suggest:coreset'"):
        S.check_selection("coreset")
    from scarce.validate import validate_config

    with pytest.raises(ConfigError, match="Did you mean 'kmeans'"):
        validate_config(load_config(sets=["data.selection=suggest:kmean", "data.size=32"]))


# ---------------------------------------------------------------------------- candidates, CSV, files

@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """30 synthetic pairs at 32 px (every 5th ``test`` in split.csv)."""
    from scarce.data.synthetic import make_synthetic

    return make_synthetic(tmp_path / "ds", 30, size=SIZE, seed=0)


@pytest.fixture
def folder(pairs: Path) -> Path:
    """:func:`pairs` plus one image without a mask (what a person would annotate)."""
    Image.new("RGB", (SIZE, SIZE), (90, 20, 20)).save(pairs / "images" / "new_unlabelled.png")
    return pairs


def test_validation_and_test_images_are_never_candidates(folder):
    from scarce.data.folder import scan_folder
    from scarce.data.load import dataset_split
    from scarce.data.registry import get_info

    info, index = get_info(str(folder)), scan_folder(folder, allow_unlabelled=True)
    test = set(index.with_split("test"))
    for seed in (0, 1, 2):
        cands = S.dataset_candidates(folder, seed)
        assert "new_unlabelled" in cands.stems and not set(cands.stems) & test
        vals = set().union(*(dataset_split(info, index, b, seed).val for b in range(2, len(index.stems) - len(test) + 1)))
        assert vals and not set(cands.stems) & vals
        ranked = S.suggest(S.Pool(cands.stems, torch.zeros(len(cands.stems), 1, 2, 2), seed=seed), 100, "random")
        assert len(ranked) == len(cands.stems)  # everything it can suggest: still no validation/test image
    dropped = S.dataset_candidates(folder, 2, labelled=["new_unlabelled"])
    assert set(dropped.stems) == set(cands.stems) - {"new_unlabelled"} and dropped.left_out["already labelled"] == 1


def test_csv_format_and_output_policy(folder, tmp_path, capsys):
    out = tmp_path / "next.csv"
    assert main(["suggest", str(folder), "-n", "4", "--strategy", "coreset", "--size", "32", "-o", str(out)]) == 0
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["stem", "score", "why"] and len(rows) == 5
    assert all(float(r[1]) >= 0 and r[2] for r in rows[1:]) and len({r[0] for r in rows[1:]}) == 4
    assert S.is_suggestions_file(out) and S.read_stems(out) == [r[0] for r in rows[1:]]
    # refused, nothing written: inside the dataset, an existing file, a file it did not write
    inside = folder / "order.csv"
    assert main(["suggest", str(folder), "-n", "2", "--size", "32", "-o", str(inside)]) == 2
    assert "inside the dataset" in capsys.readouterr().err and not inside.exists()
    assert main(["suggest", str(folder), "-n", "2", "--size", "32", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    mine = tmp_path / "notes.csv"
    mine.write_text("my notes\n")
    assert main(["suggest", str(folder), "-n", "2", "--size", "32", "-o", str(mine), "--overwrite"]) == 2
    assert mine.read_text() == "my notes\n"
    assert main(["suggest", str(folder), "-n", "2", "--size", "32", "--strategy", "random", "-o", str(out),
                 "--overwrite"]) == 0
    assert len(S.read_stems(out)) == 2
    # a labelled list is left out
    assert main(["suggest", str(folder), "-n", "50", "--strategy", "random", "--labelled", str(out), "-o",
                 str(tmp_path / "rest.csv")]) == 0
    assert not set(S.read_stems(tmp_path / "rest.csv")) & set(S.read_stems(out))


# ---------------------------------------------------------------------------- data.selection

def test_selected_training_images_are_checked():
    from scarce.data.splits import make_split, selection_candidates

    pool = [f"p{i:02d}" for i in range(20)]
    cands = selection_candidates(pool, [], 10, seed=0)
    random_split = make_split(pool, [], 10, seed=0)
    assert random_split.train == cands[:len(random_split.train)]  # random = the stream's prefix
    chosen = make_split(pool, [], 10, seed=0, selected=cands[-3:])
    assert chosen.train == cands[-3:] and chosen.val == random_split.val and chosen.budget == 3 + len(chosen.val)
    val_stream = sorted(set(pool) - set(cands))
    with pytest.raises(DataError, match="not selectable"):
        make_split(pool, [], 10, seed=0, selected=[val_stream[-1]])  # a validation image of a larger budget
    with pytest.raises(DataError, match="budget has 8"):
        make_split(pool, [], 10, seed=0, selected=cands[:9])


def _tiny_cfg(folder: Path, tmp: Path, selection: str, **extra: str):
    sets = [f"data.dataset={folder}", f"out={tmp}", "data.size=32", "data.budget=10", "model.width=4",
            "model.depth=2", "train.iterations=4", "train.val_every=2", "train.batch_size=4", "train.threads=1",
            "train.progress=false", "train.tensorboard=false", "eval.overlays=0", "data.test_sets=[]",
            f"data.selection={selection}", *[f"{k}={v}" for k, v in extra.items()]]
    return load_config(sets=sets)


def test_selection_rounds_build_nested_labelled_sets(pairs, tmp_path):
    from scarce.data.folder import scan_folder
    from scarce.data.load import dataset_split
    from scarce.data.registry import get_info

    cfg = _tiny_cfg(pairs, tmp_path / "unused", "suggest:uncertainty")
    sel = S.select_labelled(cfg)
    info, index = get_info(str(pairs)), scan_folder(pairs)
    random_split = dataset_split(info, index, 10, 0)
    assert [len(r) for r in sel.rounds] == S.round_sizes(len(random_split.train)) == [2, 4, 8]
    for small, large in zip(sel.rounds, sel.rounds[1:]):
        assert large[:len(small)] == small  # each round adds to the last
    assert sel.stems == sel.rounds[-1] and len(set(sel.stems)) == 8
    held = set(random_split.val) | set(random_split.test)
    assert not set(sel.stems) & held and len(sel.seconds) == 3
    chosen = dataset_split(info, index, 10, 0, selected=sel.stems, selection="suggest:uncertainty")
    assert chosen.val == random_split.val and chosen.test == random_split.test
    assert chosen.meta["selection"] == "suggest:uncertainty"


def test_train_with_selection_saves_the_choice_and_resumes_on_it(pairs, tmp_path, monkeypatch):
    from scarce.api import train_run
    from scarce.runfolder import config_differences

    run = tmp_path / "run"
    cfg = _tiny_cfg(pairs, run, "suggest:coreset")
    train_run(cfg)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    split = json.loads((run / "split.json").read_text())
    assert saved["data"]["selection"] == "suggest:coreset" and split["train"] == saved["data"]["selected"]
    assert split["meta"]["selection"] == "suggest:coreset" and len(split["train"]) == 8
    assert config_differences(saved, cfg) == []  # the same run: its choice is its outcome
    for other in ("suggest:kmeans", "random"):  # another selection: another run
        assert "data.selection" in config_differences(saved, _tiny_cfg(pairs, run, other))
    monkeypatch.setattr(S, "select_labelled", lambda *a, **k: pytest.fail("chose again on resume"))
    assert train_run(cfg, resume=True)["best_step"] is not None


def test_report_pairs_runs_that_differ_only_in_their_training_images(tmp_path):
    from scarce.reports.stats import _same_split, _split_key

    base = {"dataset": "d", "seed": 0, "budget": 10, "train": ["a", "b"], "val": ["v"], "test": ["t"],
            "pool_size": 20, "val_fraction": 0.2, "meta": {"folder": "/x"}}
    chosen = {**base, "train": ["c", "d"], "meta": {"folder": "/x", "selection": "suggest:coreset"}}
    other_val = {**base, "val": ["w"]}
    other_train = {**base, "train": ["c", "d"]}  # random, another training set: not the same split
    keys = []
    for i, d in enumerate((base, chosen, other_val, other_train)):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "split.json").write_text(json.dumps(d))
        keys.append(_split_key(tmp_path / str(i)))
    assert _same_split(keys[0], keys[1]) and _same_split(keys[1], keys[0])
    assert not _same_split(keys[0], keys[2]) and not _same_split(keys[1], keys[2])
    assert not _same_split(keys[0], keys[3]) and _same_split(keys[1], keys[3])
