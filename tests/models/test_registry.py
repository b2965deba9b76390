"""The registry: every architecture at every default width builds and runs forward/backward; bad input is named."""
import inspect

import pytest
import torch

from statemix.models import registry

REQUIRED = {"hlru-m1", "hlru-m2", "hlru-m3", "hlru-m4", "hlru-m5", "bdlru-m1", "bdlru-m2", "bdlru-m4", "lru",
            "lru-complex", "mamba2", "gdn", "dproduct", "lstm"}
CASES = [(name, w) for name in sorted(registry) for w in registry[name].widths]


def test_lists_required_architectures():
    assert REQUIRED <= set(registry)


@pytest.mark.parametrize("name,width", CASES, ids=[f"{n}-w{w}" for n, w in CASES])
def test_builds_forward_backward(name, width):
    torch.manual_seed(0)
    layer = registry[name].build(d_model=8, width=width)
    assert layer.state_size == width
    x = torch.randn(2, 5, 8, requires_grad=True)
    y = layer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in layer.parameters()), f"{name}: a parameter got no gradient"


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError, match=r"arch: got 'mamba3'; valid: .*bdlru-m2.*lstm"):
        registry["mamba3"]
    assert "mamba3" not in registry


@pytest.mark.parametrize("name,width,rule", [
    ("hlru-m3", 64, "multiples of 3"), ("bdlru-m4", 30, "multiples of 4"), ("lstm", 7, "even"),
    ("mamba2", 48, "multiples of 32"), ("gdn", 96, r"H·K²"), ("lru", 0, "positive int"), ("lru", 2.0, "positive"),
])
def test_impossible_width_names_rule(name, width, rule):
    with pytest.raises(ValueError, match=rf"width: got {width!r} for {name}.*{rule}"):
        registry[name].build(d_model=8, width=width)


def test_unknown_option_named():
    with pytest.raises(ValueError, match=r"mixer option: got 'nrom' for hlru-m2; allowed: backend, norm"):
        registry["hlru-m2"].build(8, 64, nrom="softmax")


def test_gdn_width_split():
    """W = H·K² with heads tried in the order 4, 2, 1."""
    assert registry["gdn"].native(64) == {"num_heads": 4, "head_dim": 4}
    assert registry["gdn"].native(128) == {"num_heads": 2, "head_dim": 8}
    assert registry["gdn"].native(9) == {"num_heads": 1, "head_dim": 3}
    assert registry["dproduct-h4"].native(256)["num_householder"] == 4


@pytest.mark.parametrize("name", sorted(registry))
def test_runs_under_bf16_autocast(name):
    """The trainer's bf16 mixed precision: recurrences keep fp32 state and the mixer still trains."""
    torch.manual_seed(0)
    layer = registry[name].build(d_model=8, width=registry[name].widths[0])
    x = torch.randn(2, 6, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.shape == x.shape and torch.isfinite(y.float()).all()
    y.float().square().sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", sorted(registry))
def test_declared_options_reach_the_constructor(name):
    """Each option the registry declares is a constructor argument of the mixer, and the mixer stores it."""
    entry = registry[name]
    values = {"norm": "sigmoid", "backend": "auto"}
    layer = entry.build(8, entry.widths[0], **{key: values[key] for key in entry.options})
    for key in entry.options:
        assert getattr(layer, key) == values[key]
    takes = set(inspect.signature(entry.factory).parameters) & set(values)
    assert takes == set(entry.options), "a config option the constructor takes is missing from the registry"
