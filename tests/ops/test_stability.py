"""Proposition 1 as a property: under every L1 norm, ‖h_t‖∞ ≤ max(‖h_0‖∞, sup‖v‖∞)."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from statemix.ops import bdlru, hlru

L1_NORMS = ["softmax", "sigmoid", "relu", "tanh", "linear"]


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["hlru", "bdlru"]),
    norm=st.sampled_from(L1_NORMS),
    M=st.integers(1, 5),
    T=st.integers(1, 80),
    logit_scale=st.floats(0.01, 30.0),
    v_scale=st.floats(0.0, 100.0),
    h0_scale=st.floats(0.0, 100.0),
    backend=st.sampled_from(["reference", "scan"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_state_stays_bounded(kind, norm, M, T, logit_scale, v_scale, h0_scale, backend, seed):
    g = torch.Generator().manual_seed(seed)
    B, N = 2, 3
    if kind == "hlru":
        logits = torch.randn(B, T, N, M + 1, generator=g, dtype=torch.float64) * logit_scale
        v = torch.randn(B, T, N, generator=g, dtype=torch.float64) * v_scale
        op = hlru
    else:
        logits = torch.randn(B, T, N, M, M + 1, generator=g, dtype=torch.float64) * logit_scale
        v = torch.randn(B, T, N, M, generator=g, dtype=torch.float64) * v_scale
        op = bdlru
    h0 = torch.randn(B, N, M, generator=g, dtype=torch.float64) * h0_scale
    out, final = op(logits, v, norm=norm, backend=backend, initial_state=h0, output_final_state=True)
    bound = max(h0.abs().max().item(), v.abs().max().item())
    assert out.abs().max().item() <= bound * (1 + 1e-9) + 1e-12
    assert final.abs().max().item() <= bound * (1 + 1e-9) + 1e-12
