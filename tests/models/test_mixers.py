"""Every mixer: causal, its one-token step equals the full forward, parameter counts match closed forms."""
import pytest
import torch

from statemix.models import registry

D = 8
ONE_WIDTH = {name: arch.widths[0] for name, arch in registry.items()}


@pytest.fixture(params=sorted(registry))
def mixer(request):
    torch.manual_seed(0)
    return request.param, registry[request.param].build(D, ONE_WIDTH[request.param]).double()


def test_causal(mixer):
    name, layer = mixer
    x = torch.randn(2, 9, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 5] += 1.0
    y, y2 = layer(x), layer(x2)
    torch.testing.assert_close(y2[:, :5], y[:, :5], msg=lambda m: f"{name} leaks the future: {m}")
    assert not torch.allclose(y2[:, 5], y[:, 5]), f"{name} ignores x_t"


def test_step_equals_forward(mixer):
    name, layer = mixer
    x = torch.randn(2, 11, D, dtype=torch.float64)
    state, ys = None, []
    for t in range(x.shape[1]):
        y_t, state = layer.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), layer(x), msg=lambda m: f"{name}: {m}")


def mamba2_params(d, d_inner, d_state, headdim, conv=4):
    heads, conv_dim = d_inner // headdim, d_inner + 2 * d_state
    return d * (2 * d_inner + 2 * d_state + heads) + conv_dim * (conv + 1) + 3 * heads + d_inner + d_inner * d


def delta_params(d, heads, k, n_h, conv=4):
    dim = heads * k
    return (d * dim * (1 + 2 * n_h) + d * heads * n_h + d * heads + 2 * heads + conv * dim * (1 + 2 * n_h)
            + d * dim + k + dim * d)


FORMULAS = {
    "hlru-m3": (lambda d, N, M=3: d * N * (M + 1) + N * (M + 1) + d * N + N * M * d, lambda w: (w // 3,)),
    "bdlru-m4": (lambda d, N, M=4: d * N * M * (M + 1) + N * M * (M + 1) + d * N * M + N * M * d,
                 lambda w: (w // 4,)),
    "lru": (lambda d, N: d * N * 2 + N * 2 + d * N + N * d, lambda w: (w,)),
    "lstm": (lambda d, h: 4 * h * (d + h) + 8 * h + h * d, lambda w: (w // 2,)),
    "lru-complex": (lambda d, n: 3 * n + 4 * n * d + d, lambda w: (w // 2,)),
    "mamba2": (mamba2_params, lambda w: (w // 4, 4, 8)),
    "gdn": (lambda d, h, k: delta_params(d, h, k, 1), lambda w: {64: (4, 4), 128: (2, 8), 512: (2, 16)}[w]),
    "dproduct": (lambda d, h, k: delta_params(d, h, k, 2), lambda w: {64: (4, 4), 128: (2, 8), 512: (2, 16)}[w]),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("width", [64, 128, 512])
def test_param_count_formula(name, width):
    formula, native = FORMULAS[name]
    width = width - width % (3 if name == "hlru-m3" else 1)
    expected = formula(128, *native(width))
    assert registry[name].param_count(128, width) == expected
    module = registry[name].build(128, width)
    assert sum(p.numel() for p in module.parameters()) == expected
    assert module.state_size == width
