"""f_divergence against closed forms: every registered f on hand-made distributions."""
from __future__ import annotations

import math

import pytest
import torch

from scarce.losses.divergence import F_FUNCTIONS, f_divergence

P = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
Q = torch.tensor([0.2, 0.2, 0.6], dtype=torch.float64)


def _closed(name: str, p: list[float], q: list[float]) -> float:
    pairs = list(zip(p, q))
    if name == "kl":
        return sum(a * math.log(a / b) for a, b in pairs)
    if name == "reverse_kl":
        return sum(b * math.log(b / a) for a, b in pairs)
    if name == "js":
        m = [(a + b) / 2 for a, b in pairs]
        return 0.5 * sum(a * math.log(a / c) for a, c in zip(p, m)) + 0.5 * sum(b * math.log(b / c) for b, c in zip(q, m))
    if name == "chi2":
        return sum((a - b) ** 2 / b for a, b in pairs)
    if name == "hellinger":
        return sum((math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in pairs)
    if name == "tv":
        return 0.5 * sum(abs(a - b) for a, b in pairs)
    raise KeyError(name)


@pytest.mark.parametrize("name", F_FUNCTIONS.names())
def test_matches_closed_form_and_is_zero_on_equal(name):
    assert float(f_divergence(P, Q, name, eps=1e-12)) == pytest.approx(_closed(name, P.tolist(), Q.tolist()), rel=1e-9)
    assert float(f_divergence(P, P, name)) == pytest.approx(0.0, abs=1e-12)
    assert float(f_divergence(P, Q, name)) > 0


def test_hand_value_kl():
    # KL([.5,.5] ‖ [.25,.75]) = .5 ln 2 + .5 ln(2/3)
    got = f_divergence(torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75]), "kl")
    assert float(got) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), rel=1e-5)


def test_batched_mean_and_finite_gradients_with_zeros():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]], requires_grad=True)
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5]], requires_grad=True)
    d = f_divergence(p, q, "kl")
    d.backward()
    assert torch.isfinite(d) and torch.isfinite(p.grad).all() and torch.isfinite(q.grad).all()
    one = f_divergence(p[:1], q[:1], "kl")
    assert float(d.detach()) == pytest.approx(float(one.detach()) / 2, rel=1e-6)  # second row contributes 0


def test_symmetric_ones_are_symmetric_and_kl_is_not():
    for name in ("js", "hellinger", "tv"):
        assert float(f_divergence(P, Q, name)) == pytest.approx(float(f_divergence(Q, P, name)), rel=1e-9)
    assert float(f_divergence(P, Q, "kl")) != pytest.approx(float(f_divergence(Q, P, "kl")), rel=1e-3)
    assert float(f_divergence(P, Q, "kl")) == pytest.approx(float(f_divergence(Q, P, "reverse_kl")), rel=1e-9)


def test_unknown_f_did_you_mean():
    with pytest.raises(KeyError, match="Did you mean 'hellinger'"):
        f_divergence(P, Q, "helinger")
