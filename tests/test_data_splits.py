"""Nested, deterministic few-label splits and the fixed held-out test set."""
from __future__ import annotations

import pytest

from scarce.data import DataError
from scarce.data.splits import Split, held_out, make_split, pool_and_test

POOL = [f"s{i:04d}" for i in range(300)]


@pytest.mark.parametrize("budget,n_train,n_val", [(40, 32, 8), (100, 80, 20), (200, 160, 40),
                                                  (9, 7, 2)])
def test_sizes(budget, n_train, n_val):
    sp = make_split(POOL, [], budget, seed=3)
    assert (len(sp.train), len(sp.val)) == (n_train, n_val)
    assert not set(sp.train) & set(sp.val)


def test_nested_and_deterministic():
    a = make_split(POOL, [], 40, seed=1)
    b = make_split(POOL, [], 100, seed=1)
    c = make_split(POOL, [], 200, seed=1)
    assert set(a.train) <= set(b.train) <= set(c.train)
    assert set(a.val) <= set(b.val) <= set(c.val)
    assert make_split(list(reversed(POOL)), [], 40, seed=1).train == a.train
    assert make_split(POOL, [], 40, seed=2).train != a.train


def test_budget_too_large_and_full_pool():
    with pytest.raises(DataError, match="300"):
        make_split(POOL, [], 301, seed=0)
    sp = make_split(POOL[:11], [], 11, seed=0)
    assert sorted(sp.train + sp.val) == POOL[:11]
    assert len(make_split(POOL, [], 0, seed=0).train) == 240


def test_held_out_fixed_and_disjoint():
    pool, test = held_out(POOL)
    assert len(test) == 60 and not set(pool) & set(test)
    assert held_out(POOL) == (pool, test)
    for seed in range(3):
        sp = make_split(pool, test, 200, seed)
        assert not (set(sp.train) | set(sp.val)) & set(sp.test)
    with pytest.raises(DataError):
        make_split(POOL, POOL[:3], 10, seed=0)


def test_official_test_split():
    splits = {s: ("val" if i < 30 else "train") for i, s in enumerate(POOL)}
    pool, test = pool_and_test(POOL, splits, "train", "val")
    assert len(pool) == 270 and test == POOL[:30]


def test_save_load(tmp_path):
    sp = make_split(POOL, POOL[:0], 40, seed=5, dataset="x")
    sp.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == sp
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json"):
        Split.load(tmp_path / "bad.json")
