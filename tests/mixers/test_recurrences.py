"""Chunked PyTorch recurrences against hand-written sequential loops, plus invariants of each recurrence."""
import math

import pytest
import torch

from statemix.mixers.delta_rule import (gated_delta_product_chunked, gated_delta_product_ref,
                                        gated_delta_rule_chunked, gated_delta_rule_ref, l2norm)
from statemix.mixers.lru_complex import LRUComplex, lru_scan_chunked, lru_scan_ref
from statemix.mixers.mamba2 import ssd_chunked, ssd_ref

F64 = dict(dtype=torch.float64)


def delta_inputs(B, T, H, K, V, n_h, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g, **F64)
    k = l2norm(torch.randn(B, T * n_h, H, K, generator=g, **F64))
    v = torch.randn(B, T * n_h, H, V, generator=g, **F64)
    decay = -torch.rand(B, T, H, generator=g, **F64)
    beta = 2 * torch.rand(B, T * n_h, H, generator=g, **F64)
    S0 = torch.randn(B, H, K, V, generator=g, **F64)
    return q, k, v, decay, beta, S0


def test_delta_rule_loop_matches_matrix_form():
    """The loop's update equals `S = (I - β k kᵀ)(α S) + β k vᵀ` written with explicit matrices."""
    q, k, v, decay, beta, S0 = delta_inputs(1, 5, 1, 3, 2, 1, seed=1)
    S = S0[0, 0].clone()
    for t in range(5):
        kt, bt = k[0, t, 0][:, None], beta[0, t, 0]
        S = (torch.eye(3, **F64) - bt * kt @ kt.T) @ (torch.exp(decay[0, t, 0]) * S) + bt * kt @ v[0, t, 0][None]
    o, final = gated_delta_rule_ref(q, k, v, decay, beta, scale=1.0, initial_state=S0)
    torch.testing.assert_close(final[0, 0], S)
    torch.testing.assert_close(o[0, -1, 0], S.T @ q[0, -1, 0])


def test_beta_two_is_a_reflection():
    """β = 2, unit k, no decay, v = 0: the transition is a Householder reflection (eigenvalue −1), norm-preserving."""
    q, k, v, decay, beta, S0 = delta_inputs(2, 6, 2, 4, 3, 1, seed=2)
    k = k / k.norm(dim=-1, keepdim=True)
    _, S = gated_delta_rule_ref(q, k, torch.zeros_like(v), torch.zeros_like(decay), torch.full_like(beta, 2.0),
                                initial_state=S0)
    torch.testing.assert_close(S.norm(dim=(-2, -1)), S0.norm(dim=(-2, -1)))
    _, once = gated_delta_rule_ref(q[:, :1], k[:, :1], torch.zeros_like(v[:, :1]), torch.zeros_like(decay[:, :1]),
                                   torch.full_like(beta[:, :1], 2.0), initial_state=S0)
    _, twice = gated_delta_rule_ref(q[:, :2], k[:, :1].repeat(1, 2, 1, 1), torch.zeros_like(v[:, :2]),
                                    torch.zeros_like(decay[:, :2]), torch.full_like(beta[:, :2], 2.0),
                                    initial_state=S0)
    torch.testing.assert_close(twice, S0)
    assert not torch.allclose(once, S0)


@pytest.mark.parametrize("T,chunk", [(1, 4), (13, 4), (37, 16), (64, 64)], ids=lambda x: str(x))
@pytest.mark.parametrize("n_h", [1, 3])
def test_delta_chunked_matches_loop(T, chunk, n_h):
    q, k, v, decay, beta, S0 = delta_inputs(2, T, 3, 5, 4, n_h, seed=T + n_h)
    fn = gated_delta_rule_chunked if n_h == 1 else gated_delta_product_chunked
    o, S = fn(q, k, v, decay, beta, initial_state=S0, chunk_size=chunk)
    o_ref, S_ref = gated_delta_product_ref(q, k, v, decay, beta, initial_state=S0)
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(S, S_ref)


def test_delta_chunked_gradients_match_loop():
    inputs = [t.requires_grad_() for t in delta_inputs(1, 11, 2, 3, 3, 2, seed=5)]
    grads = []
    for fn in (gated_delta_product_ref, lambda *a: gated_delta_product_chunked(*a, chunk_size=4)):
        o, S = fn(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], None, inputs[5])
        grads.append(torch.autograd.grad((o.sin().sum() + S.cos().sum()), inputs))
    for name, a, b in zip("q k v g beta S0".split(), *grads):
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"d{name}: {m}")


def ssd_inputs(B, T, H, P, G, S, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, H, P, generator=g, **F64), torch.rand(B, T, H, generator=g, **F64),
            -3 * torch.rand(H, generator=g, **F64), torch.randn(B, T, G, S, generator=g, **F64),
            torch.randn(B, T, G, S, generator=g, **F64), torch.randn(H, generator=g, **F64),
            torch.randn(B, H, P, S, generator=g, **F64))


def test_ssd_loop_hand_worked():
    """One head, P = S = 1, two steps: h1 = dt1 x1 B1, h2 = e^{dt2 A} h1 + dt2 x2 B2, y = h C + D x."""
    x = torch.tensor([2.0, -1.0], **F64).view(1, 2, 1, 1)
    dt = torch.tensor([0.5, 0.25], **F64).view(1, 2, 1)
    A, D = torch.tensor([-2.0], **F64), torch.tensor([0.5], **F64)
    Bm = torch.tensor([3.0, 1.0], **F64).view(1, 2, 1, 1)
    Cm = torch.tensor([1.0, 4.0], **F64).view(1, 2, 1, 1)
    y, h = ssd_ref(x, dt, A, Bm, Cm, D)
    h1 = 0.5 * 2 * 3
    h2 = math.exp(-0.5) * h1 + 0.25 * -1 * 1
    torch.testing.assert_close(y.flatten(), torch.tensor([h1 * 1 + 1.0, h2 * 4 - 0.5], **F64))
    torch.testing.assert_close(h.flatten(), torch.tensor([h2], **F64))


@pytest.mark.parametrize("T,chunk,G", [(1, 8, 1), (29, 8, 1), (40, 16, 2)], ids=lambda x: str(x))
def test_ssd_chunked_matches_loop(T, chunk, G):
    x, dt, A, Bm, Cm, D, h0 = ssd_inputs(2, T, 4, 3, G, 5, seed=T)
    y, h = ssd_chunked(x, dt, A, Bm, Cm, D, h0, chunk_size=chunk)
    y_ref, h_ref = ssd_ref(x, dt, A, Bm, Cm, D, h0)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(h, h_ref)


@pytest.mark.parametrize("T,chunk", [(1, 4), (23, 8), (32, 32)], ids=lambda x: str(x))
def test_lru_scan_chunked_matches_loop(T, chunk):
    g = torch.Generator().manual_seed(T)
    log_lam = torch.complex(-torch.rand(6, generator=g, **F64), 6 * torch.rand(6, generator=g, **F64))
    u = torch.complex(torch.randn(2, T, 6, generator=g, **F64), torch.randn(2, T, 6, generator=g, **F64))
    h0 = torch.complex(torch.randn(2, 6, generator=g, **F64), torch.randn(2, 6, generator=g, **F64))
    h, last = lru_scan_chunked(log_lam, u, h0, chunk_size=chunk)
    h_ref, last_ref = lru_scan_ref(log_lam, u, h0)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(last, last_ref)


def test_lru_ring_init_and_gamma():
    torch.manual_seed(0)
    layer = LRUComplex(8, 500, r_min=0.5, r_max=0.8, max_phase=1.0)
    lam = torch.exp(layer.log_lambda().detach())
    assert lam.abs().min() >= 0.5 - 1e-6 and lam.abs().max() <= 0.8 + 1e-6
    assert lam.angle().min() >= 0 and lam.angle().max() <= 1.0
    torch.testing.assert_close(torch.exp(layer.gamma_log.detach()), torch.sqrt(1 - lam.abs() ** 2))
    with torch.no_grad():
        layer.nu_log.normal_(0, 5)
    assert torch.exp(layer.log_lambda().detach()).abs().max() < 1
