"""Pair-scan kernels (`statemix.ops.triton.pairscan`) against the sequential reference.

Interpreter tests run 4-step × 2-row tiles, so T and N leave partial tiles and the state
is carried across several tiles; GPU tests run the compiled kernels at the MAD training
shape and at long odd T. Outputs, final state and gradients (logits, v, h0) are compared.
"""
import pytest
import torch
from test_triton import compare, compiled, interp  # noqa: F401  (fixtures)

from statemix.ops.norm import NORMS

PAIR = [("hlru", m) for m in (2, 3, 4, 5)] + [("bdlru", m) for m in (2, 3, 4, 5)]


@pytest.mark.parametrize("kind,M", PAIR)
@pytest.mark.parametrize("with_h0", [False, True], ids=["h0=0", "h0"])
def test_pair_orders(interp, kind, M, with_h0):
    compare(interp, kind, 2, 9, 3, M, "softmax", torch.float32, with_h0, path="pair")


@pytest.mark.parametrize("kind,M", [("hlru", 3), ("bdlru", 2)])
@pytest.mark.parametrize("norm", NORMS)
def test_pair_norms(interp, kind, M, norm):
    compare(interp, kind, 1, 7, 3, M, norm, torch.float32, True, path="pair")


@pytest.mark.parametrize("kind,M", [("hlru", 2), ("bdlru", 4)])
def test_pair_bf16(interp, kind, M):
    compare(interp, kind, 2, 5, 2, M, "tanh", torch.bfloat16, True, path="pair")


@pytest.mark.parametrize("T", [1, 4])
def test_pair_single_tile(interp, T):
    """T within one tile, and T filling it exactly (the carry is the tile's last row)."""
    compare(interp, "bdlru", 1, T, 3, 2, "sigmoid", torch.float32, True, path="pair")


def test_dispatch_by_shape(interp):
    """Default dispatch: pair scans for M > 1 up to 30 operands and T ≤ 512, chunked kernels beyond or when asked."""
    from statemix.ops.triton.pairscan import use_pair

    x = lambda *s: torch.zeros(s)  # noqa: E731
    assert use_pair("hlru", x(1, 4, 2, 6), None, None, None)
    assert not use_pair("hlru", x(1, 513, 2, 6), None, None, None)
    assert use_pair("bdlru", x(1, 4, 2, 5, 6), None, None, None)
    assert not use_pair("bdlru", x(1, 4, 2, 8, 9), None, None, None)
    assert not use_pair("hlru", x(1, 4, 2, 3), 2, None, None)
    assert not use_pair("hlru", x(1, 4, 2, 3).double(), None, None, None)
    with pytest.raises(ValueError, match="path"):
        use_pair("hlru", x(1, 4, 2, 3), None, None, "fast")


@pytest.mark.gpu
@pytest.mark.parametrize("kind,M", PAIR)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(128, 128, 16), (3, 1001, 40)], ids=["MAD-like", "B3-T1001"])
def test_gpu_pair_orders(compiled, kind, M, dtype, shape):
    B, T, N = shape
    compare(compiled, kind, B, T, N, M, "softmax", dtype, M % 2 == 0, device="cuda", path="pair")


@pytest.mark.gpu
@pytest.mark.parametrize("kind,M", [("hlru", 3), ("bdlru", 4)])
@pytest.mark.parametrize("norm", NORMS)
def test_gpu_pair_norms(compiled, kind, M, norm):
    compare(compiled, kind, 2, 515, 32, M, norm, torch.float32, True, device="cuda", path="pair")
