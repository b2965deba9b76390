"""Gate normalisations against hand-worked values (paper.md §1.4)."""
import pytest
import torch

from statemix.ops import NORMS, normalize

G = torch.tensor([[1.0, -2.0, 0.5]])


@pytest.mark.parametrize(
    "norm, want",
    [
        ("softmax", torch.exp(G) / torch.exp(G).sum()),
        ("sigmoid", torch.sigmoid(G) / torch.sigmoid(G).sum()),
        ("relu", torch.tensor([[1.0, 0.0, 0.5]]) / 1.503),
        ("tanh", torch.tanh(G) / torch.tanh(G).abs().sum()),
        ("linear", G / 3.5),
        ("none", G),
    ],
)
def test_normalize_values(norm, want):
    torch.testing.assert_close(normalize(G, norm), want)


@pytest.mark.parametrize("norm", [n for n in NORMS if n != "none"])
def test_l1_budget(norm):
    g = torch.randn(1000, 4) * 5
    assert (normalize(g, norm).abs().sum(-1) <= 1 + 1e-6).all()


def test_zero_logits_do_not_divide_by_zero():
    assert torch.isfinite(normalize(torch.zeros(2, 3), "linear")).all()


def test_unknown_norm():
    with pytest.raises(ValueError, match="norm: got 'l2'; allowed"):
        normalize(G, "l2")
