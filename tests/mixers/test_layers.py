"""Layers: parameters and init as in the paper, step() against forward, M=1 equivalence, iso-state."""
import pytest
import torch

from statemix.mixers import BDLRU, HLRU, BDLRUNonSelective, HLRUNonSelective

D = 16
LAYERS = {
    "hlru": lambda M, norm="softmax": HLRU(D, 3, M, norm=norm),
    "bdlru": lambda M, norm="softmax": BDLRU(D, 3, M, norm=norm),
    "hlru-nonsel": lambda M, norm="softmax": HLRUNonSelective(D, 3, M, norm=norm),
    "bdlru-nonsel": lambda M, norm="softmax": BDLRUNonSelective(D, 3, M, norm=norm),
}


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("M", [1, 2, 4])
def test_parameter_counts_match_paper(M):
    d, N = 128, 8
    assert n_params(HLRU(d, N, M)) == d * N * (M + 1) + N * (M + 1) + d * N + N * M * d
    assert n_params(BDLRU(d, N, M)) == d * N * M * (M + 1) + N * M * (M + 1) + d * N * M + N * M * d
    assert HLRU(d, N, M).state_size == BDLRU(d, N, M).state_size == N * M


def test_init_is_n002_with_zero_bias():
    torch.manual_seed(0)
    layer = BDLRU(128, 32, 4)
    w = layer.proj_gates.weight
    assert abs(w.std().item() - 0.02) < 1e-3 and abs(w.mean().item()) < 1e-3
    assert (layer.proj_gates.bias == 0).all()


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("M", [1, 3])
@pytest.mark.parametrize("norm", ["softmax", "tanh"])
def test_step_equals_forward(name, M, norm):
    torch.manual_seed(0)
    layer = LAYERS[name](M, norm).double()
    x = torch.randn(2, 19, D, dtype=torch.float64)
    y = layer(x)
    state, ys = None, []
    for t in range(x.shape[1]):
        y_t, state = layer.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y)
    _, final = layer(x, return_state=True)
    torch.testing.assert_close(state, final)


@pytest.mark.parametrize("name", ["hlru", "bdlru"])
def test_forward_in_two_pieces_equals_full(name):
    torch.manual_seed(0)
    layer = LAYERS[name](3).double()
    x = torch.randn(2, 40, D, dtype=torch.float64)
    y1, st = layer(x[:, :17], return_state=True)
    y2 = layer(x[:, 17:], state=st)
    torch.testing.assert_close(torch.cat([y1, y2], 1), layer(x))


def test_hlru_output_reads_every_lag():
    """y_t must equal W_out · (s_t, s_{t-1}, …, s_{t-M+1}) computed by hand from the op."""
    torch.manual_seed(0)
    layer = HLRU(D, 2, 3).double()
    x = torch.randn(1, 6, D, dtype=torch.float64)
    from statemix.ops import hlru

    s = hlru(layer.gate_logits(x), layer.proj_v(x), backend="reference")[0]  # [T, N]
    lags = torch.zeros(6, 2, 3, dtype=torch.float64)
    for t in range(6):
        for k in range(3):
            if t - k >= 0:
                lags[t, :, k] = s[t - k]
    torch.testing.assert_close(layer(x)[0], layer.proj_out(lags.flatten(-2)))


def test_order1_layers_are_the_same_model():
    torch.manual_seed(0)
    h, b = HLRU(D, 5, 1), BDLRU(D, 5, 1)
    b.load_state_dict(h.state_dict())
    x = torch.randn(2, 23, D)
    torch.testing.assert_close(h(x), b(x))


@pytest.mark.parametrize("name", ["hlru", "bdlru"])
def test_backward_reaches_every_parameter(name):
    layer = LAYERS[name](2)
    layer(torch.randn(2, 9, D)).pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("key, args", [("channels", (D, 0, 2)), ("order", (D, 3, 2.5)), ("d_model", (-1, 3, 2)), ("norm", (D, 3, 2, "l2")), ("backend", (D, 3, 2, "softmax", "gpu"))])
def test_bad_sizes(key, args):
    with pytest.raises(ValueError, match=f"{key}: got"):
        HLRU(*args)
    with pytest.raises(ValueError):
        BDLRU(*args)
