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
PATHS = ["pair", "pair-joint"]
"""Rows loaded as M lanes plus the input gate, or all K = M+1 logits in one load (`pairscan_gen`)."""


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind,M", PAIR)
@pytest.mark.parametrize("with_h0", [False, True], ids=["h0=0", "h0"])
def test_pair_orders(interp, kind, M, with_h0, path):
    compare(interp, kind, 2, 9, 3, M, "softmax", torch.float32, with_h0, path=path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind,M", [("hlru", 3), ("bdlru", 2)])
@pytest.mark.parametrize("norm", NORMS)
def test_pair_norms(interp, kind, M, norm, path):
    compare(interp, kind, 1, 7, 3, M, norm, torch.float32, True, path=path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind,M", [("hlru", 2), ("bdlru", 4)])
def test_pair_bf16(interp, kind, M, path):
    compare(interp, kind, 2, 5, 2, M, "tanh", torch.bfloat16, True, path=path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("T", [1, 4])
def test_pair_single_tile(interp, T, path):
    """T within one tile, and T filling it exactly (the carry is the tile's last row)."""
    compare(interp, "bdlru", 1, T, 3, 2, "sigmoid", torch.float32, True, path=path)


def test_joint_rows_take_one_load_and_one_store_per_row():
    """The generated joint kernels load each row's logits once and store their gradients once: BD-LRU M=4
    has M rows per block, so 4 logit loads in the forward (8 split), 8 in the backward (this step's rows
    and the next step's; 16 split), and 4 gradient stores (8 split)."""
    from statemix.ops.triton.pairscan_gen import bwd_source, fwd_source

    def count(src, what):
        return sum(what in line for line in src.splitlines())

    for joint, per_row in ((True, 1), (False, 2)):
        fwd, bwd = fwd_source("bdlru", 4, joint), bwd_source("bdlru", 4, joint)
        assert count(fwd, "tl.load(x_ptr") == 4 * per_row
        assert count(bwd, "tl.load(x_ptr") == 8 * per_row
        assert count(bwd, "tl.store(dx_ptr") == 4 * per_row


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
    assert use_pair("bdlru", x(1, 4, 2, 8, 9), None, None, "pair-joint")
    with pytest.raises(ValueError, match="path"):
        use_pair("hlru", x(1, 4, 2, 3), None, None, "fast")
    with pytest.raises(ValueError, match="'pair-joint' computes in fp32"):
        use_pair("hlru", x(1, 4, 2, 3).double(), None, None, "pair-joint")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind,M", PAIR)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(128, 128, 16), (3, 1001, 40)], ids=["MAD-like", "B3-T1001"])
def test_gpu_pair_orders(compiled, kind, M, dtype, shape, path):
    B, T, N = shape
    compare(compiled, kind, B, T, N, M, "softmax", dtype, M % 2 == 0, device="cuda", path=path)


@pytest.mark.gpu
@pytest.mark.parametrize("kind,M", [("hlru", 3), ("bdlru", 4)])
@pytest.mark.parametrize("norm", NORMS)
def test_gpu_pair_norms(compiled, kind, M, norm):
    compare(compiled, kind, 2, 515, 32, M, norm, torch.float32, True, device="cuda", path="pair")


@pytest.mark.parametrize("kind,M", [("bdlru", 4), ("hlru", 2)])
def test_joint_kernels_compile_for_hopper(compiled, kind, M):
    """The interpreter is lax about types and shapes: compile the joint kernels for sm_90 (no GPU needed) with
    the tiles the dispatch would launch, so an error shows here and not on the H200."""
    import inspect

    import triton

    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError:
        pytest.skip("this triton cannot compile ahead of time")
    pairscan = compiled.pairscan
    fwd, bwd = pairscan.kernels(kind, M, joint=True)
    for kernel, backward in ((fwd, False), (bwd, True)):
        tile = pairscan.default_tile(kind, M, 128, backward=backward, joint=True)
        names = list(inspect.signature(kernel.fn).parameters)
        const = {"NORM": 0, "TT": tile.TT, "BN": tile.BN, "MP": pairscan.lanes(M, joint=True)}
        fp32 = ("h0_ptr", "fin_ptr", "dfin_ptr", "dh0_ptr")
        sig = {n: "constexpr" if n in const else ("*fp32" if n in fp32 else "*bf16") if n.endswith("_ptr") else "i32"
               for n in names}
        src = ASTSource(fn=kernel, signature=sig, constexprs={(names.index(c),): v for c, v in const.items()})
        binary = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": tile.warps})
        assert binary.asm.get("cubin"), f"{kind} M={M} {'bwd' if backward else 'fwd'}: no cubin"
