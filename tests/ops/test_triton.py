"""Triton backend (`statemix.ops.triton`) against the sequential reference.

CPU tests run the kernels under the Triton interpreter (TRITON_INTERPRET=1) at tiny
shapes; `gpu` tests run the compiled kernels at realistic shapes. Both compare
outputs, final state and the gradients w.r.t. logits, v and the initial state.
"""
import importlib
import os
import sys
from contextlib import contextmanager

import pytest
import torch

from statemix.ops.naive import bdlru_ref, hlru_ref
from statemix.ops.norm import NORMS
from statemix.testing import assert_close, make_inputs

REF = {"hlru": hlru_ref, "bdlru": bdlru_ref}


@contextmanager
def kernels(interpret):
    """Import `statemix.ops.triton` fresh, with its kernels interpreted or compiled.

    Triton reads TRITON_INTERPRET when a kernel is defined, so the package is re-imported
    under the wanted setting and dropped again afterwards; the variable stays set while
    interpreted kernels run, since the wrappers consult it for tile sizes.
    """
    old = os.environ.get("TRITON_INTERPRET")

    def drop():
        for name in [m for m in sys.modules if m.startswith("statemix.ops.triton")]:
            del sys.modules[name]

    drop()
    if interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    try:
        yield importlib.import_module("statemix.ops.triton")
    finally:
        drop()
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old


@pytest.fixture(scope="module")
def interp():
    with kernels(True) as mod:
        yield mod


@pytest.fixture(scope="module")
def compiled():
    with kernels(False) as mod:
        yield mod


def run(fn, logits, v, h0, norm, **kw):
    """Forward with final state, then backward of a fixed random projection of both."""
    out, final = fn(logits, v, norm, h0, **kw)
    g = torch.Generator().manual_seed(1)
    w_out = torch.randn(out.shape, generator=g).to(out.device, torch.float32)
    w_fin = torch.randn(final.shape, generator=g).to(final.device, torch.float32)
    ((out.float() * w_out).sum() + (final.float() * w_fin).sum()).backward()
    grads = {"dlogits": logits.grad, "dv": v.grad}
    if h0 is not None:
        grads["dh0"] = h0.grad
    return out, final, grads


def compare(ops, kind, B, T, N, M, norm, dtype, with_h0, device="cpu", time_major=False, **kw):
    fn = ops.hlru_triton if kind == "hlru" else ops.bdlru_triton
    res = {}
    for name, f in (("ref", REF[kind]), ("tri", fn)):
        logits, v, h0 = make_inputs(kind, B, T, N, M, norm, dtype, with_h0, device=device)
        if time_major and name == "tri":
            logits, v = (ops.diag.time_major(t.detach()).requires_grad_() for t in (logits, v))
            assert logits.stride(1) == 1 and v.stride(1) == 1
        extra = dict(kw, output_final_state=True) if name == "tri" else {}
        res[name] = run(f, logits, v, h0, norm, **extra)
    (ref, ref_fin, ref_g), (tri, tri_fin, tri_g) = res["ref"], res["tri"]
    assert tri.dtype == dtype and tri.shape == ref.shape
    if time_major and T > 1 and M == 1:
        assert tri.stride(1) == 1, "the output keeps the inputs' time-major layout"
    assert tri_fin.dtype == ref_fin.dtype
    assert_close("out", ref, tri, dtype)
    assert_close("final_state", ref_fin, tri_fin, dtype)
    for name in ref_g:
        assert_close(name, ref_g[name], tri_g[name], dtype)


@pytest.mark.parametrize("M", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("with_h0", [False, True], ids=["h0=0", "h0"])
def test_hlru_orders(interp, M, with_h0):
    compare(interp, "hlru", 1, 13, 3, M, "softmax", torch.float32, with_h0, chunk=5)


@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 6, 7, 8])
def test_bdlru_block_sizes(interp, M):
    compare(interp, "bdlru", 1, 11, 3, M, "softmax", torch.float32, M % 2 == 1, chunk=4)


@pytest.mark.parametrize("kind", ["hlru", "bdlru"])
@pytest.mark.parametrize("norm,dtype", [("softmax", torch.float32), ("relu", torch.float32), ("tanh", torch.bfloat16)])
def test_diagonal_block_scan(interp, kind, norm, dtype):
    """M = 1 without a forced chunk length takes the single-pass block-scan kernels."""
    compare(interp, kind, 2, 13, 3, 1, norm, dtype, True)


@pytest.mark.parametrize("kind", ["hlru", "bdlru"])
@pytest.mark.parametrize("norm,dtype,with_h0", [("softmax", torch.float32, True), ("sigmoid", torch.bfloat16, False),
                                                ("linear", torch.float32, True)])
@pytest.mark.parametrize("T", [3, 11, 12])
def test_diagonal_time_major(interp, kind, norm, dtype, with_h0, T):
    """Time-major operands (T the unit-stride axis) are read in place and give the same results, whether
    T fills the interpreter's 4-step tiles exactly, leaves a partial last tile, or fits in one tile."""
    compare(interp, kind, 2, T, 3, 1, norm, dtype, with_h0, time_major=True)


@pytest.mark.parametrize("kind,M", [("hlru", 2), ("bdlru", 3)])
def test_time_major_general_orders(interp, kind, M):
    """M > 1 copies time-major operands to the contiguous layout and agrees too."""
    compare(interp, kind, 1, 9, 2, M, "softmax", torch.float32, True, time_major=True, chunk=4)


@pytest.mark.parametrize("kind,M", [("hlru", 3), ("bdlru", 3)])
@pytest.mark.parametrize("norm", NORMS)
def test_norms_one_chunk(interp, kind, M, norm):
    compare(interp, kind, 2, 9, 3, M, norm, torch.float32, True)


@pytest.mark.parametrize("kind,M", [("hlru", 2), ("bdlru", 4)])
@pytest.mark.parametrize("norm", ["softmax", "tanh"])
def test_bf16_storage(interp, kind, M, norm):
    compare(interp, kind, 2, 13, 3, M, norm, torch.bfloat16, True, chunk=6)


def test_gradcheck_fp64(interp):
    logits, v, h0 = make_inputs("hlru", 1, 4, 1, 2, "sigmoid", torch.float64, True)
    f = lambda lg, vv, hh: interp.hlru_triton(lg, vv, "sigmoid", hh, True, chunk=2)  # noqa: E731
    assert torch.autograd.gradcheck(f, (logits, v, h0))


@pytest.mark.parametrize("kind", ["hlru", "bdlru"])
def test_empty_sequence_returns_initial_state(interp, kind):
    logits, v, h0 = make_inputs(kind, 2, 0, 3, 2, "softmax", torch.float32, True)
    fn = interp.hlru_triton if kind == "hlru" else interp.bdlru_triton
    out, final = fn(logits, v, "softmax", h0, True)
    assert out.shape == v.shape
    assert torch.equal(final, h0)


def test_bad_arguments_name_the_argument(interp):
    logits, v, _ = make_inputs("hlru", 1, 4, 2, 2)
    with pytest.raises(ValueError, match="norm"):
        interp.hlru_triton(logits, v, "softplus")
    with pytest.raises(ValueError, match="chunk"):
        interp.hlru_triton(logits, v, "softmax", chunk=0)
    with pytest.raises(ValueError, match="v: shape"):
        interp.bdlru_triton(torch.randn(1, 4, 2, 2, 3), v)


GPU_TOL_SHAPES = [(4, 999, 64), (1, 3001, 8)]


@pytest.mark.gpu
@pytest.mark.parametrize("kind,M", [("hlru", m) for m in (1, 2, 3, 4, 5)] + [("bdlru", m) for m in (1, 2, 4, 8, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", GPU_TOL_SHAPES, ids=["B4-T999", "B1-T3001"])
def test_gpu_orders(compiled, kind, M, dtype, shape):
    B, T, N = shape
    compare(compiled, kind, B, T, N, M, "softmax", dtype, True, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("kind,M", [("hlru", 3), ("bdlru", 4), ("hlru", 1)])
@pytest.mark.parametrize("norm", NORMS)
def test_gpu_norms(compiled, kind, M, norm):
    compare(compiled, kind, 2, 515, 32, M, norm, torch.float32, True, device="cuda", chunk=128)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["hlru", "bdlru"])
@pytest.mark.parametrize("norm", NORMS)
def test_gpu_diagonal_norms(compiled, kind, norm):
    compare(compiled, kind, 2, 515, 40, 1, norm, torch.float32, True, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["hlru", "bdlru"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(4, 2999, 64), (2, 1025, 5)], ids=["B4-T2999", "B2-T1025"])
def test_gpu_diagonal_time_major(compiled, kind, dtype, shape):
    B, T, N = shape
    compare(compiled, kind, B, T, N, 1, "softmax", dtype, True, device="cuda", time_major=True)
