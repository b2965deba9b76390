"""The `scan` backend against the `reference` loop, and the H-LRU / BD-LRU identities."""
import pytest
import torch

from statemix.ops import NORMS, bdlru, hlru
from statemix.testing import TOL, assert_close, make_inputs

OPS = {"hlru": hlru, "bdlru": bdlru}


def run_with_grads(op, logits, v, h0, norm, backend):
    out, final = op(logits, v, norm=norm, backend=backend, initial_state=h0, output_final_state=True)
    g = torch.Generator().manual_seed(1)
    w_out = torch.randn(out.shape, generator=g).to(device=out.device, dtype=out.dtype)
    w_fin = torch.randn(final.shape, generator=g).to(final.device)
    ((out.float() * w_out.float()).sum() + (final * w_fin).sum()).backward()
    grads = {"dlogits": logits.grad, "dv": v.grad}
    if h0 is not None:
        grads["dh0"] = h0.grad
    return out, final, grads


def compare(kind, T, M, norm, dtype, with_h0):
    tensors = {}
    for backend in ("reference", "scan"):
        logits, v, h0 = make_inputs(kind, 2, T, 3, M, norm, dtype, with_h0)
        tensors[backend] = run_with_grads(OPS[kind], logits, v, h0, norm, backend)
    (ref, ref_final, ref_grads), (tri, tri_final, tri_grads) = tensors["reference"], tensors["scan"]
    assert tri.dtype == dtype and tri.shape == ref.shape
    assert_close("out", ref, tri, dtype)
    assert_close("final_state", ref_final, tri_final, torch.float32)
    for name in ref_grads:
        assert_close(name, ref_grads[name], tri_grads[name], dtype)


@pytest.mark.parametrize("kind", ["hlru", "bdlru"])
@pytest.mark.parametrize("M", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("T", [1, 7, 63, 200])
@pytest.mark.parametrize("with_h0", [False, True], ids=["h0=0", "h0"])
def test_scan_fp32(kind, M, norm, T, with_h0):
    compare(kind, T, M, norm, torch.float32, with_h0)


@pytest.mark.parametrize("kind", ["hlru", "bdlru"])
@pytest.mark.parametrize("M", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("norm", ["softmax", "sigmoid", "tanh"])
@pytest.mark.parametrize("T", [7, 200])
@pytest.mark.parametrize("with_h0", [False, True], ids=["h0=0", "h0"])
def test_scan_bf16(kind, M, norm, T, with_h0):
    compare(kind, T, M, norm, torch.bfloat16, with_h0)


@pytest.mark.parametrize("kind", ["hlru", "bdlru"])
def test_scan_gradcheck_fp64(kind):
    logits, v, h0 = make_inputs(kind, 1, 9, 2, 3, "softmax", torch.float64, True)
    op = OPS[kind]
    fn = lambda lg, vv, hh: op(lg, vv, backend="scan", initial_state=hh, output_final_state=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (logits, v, h0))


def test_hand_worked_order2():
    """M=2, `none` norm, T=3: s1 = a0 v1, s2 = a1 s1 + a0 v2, s3 = a1 s2 + a2 s1 + a0 v3."""
    a1, a2, a0 = 0.5, 0.25, 2.0
    logits = torch.tensor([a1, a2, a0]).expand(1, 3, 1, 3)
    v = torch.tensor([1.0, -1.0, 3.0]).view(1, 3, 1)
    s1 = a0 * 1.0
    s2 = a1 * s1 + a0 * -1.0
    s3 = a1 * s2 + a2 * s1 + a0 * 3.0
    want = torch.tensor([s1, s2, s3]).view(1, 3, 1)
    for backend in ("reference", "scan"):
        s, final = hlru(logits, v, norm="none", backend=backend, output_final_state=True)
        torch.testing.assert_close(s, want)
        torch.testing.assert_close(final, torch.tensor([[[s3, s2]]]))


@pytest.mark.parametrize("M", [1, 2, 3, 5])
@pytest.mark.parametrize("backend", ["reference", "scan"])
def test_hlru_is_bdlru_with_companion_block(M, backend):
    logits, v, h0 = make_inputs("hlru", 2, 31, 3, M, "softmax", torch.float64, True)
    s, s_final = hlru(logits, v, backend=backend, initial_state=h0, output_final_state=True)
    a = torch.softmax(logits, -1)
    B, T, N, _ = a.shape
    rows = torch.zeros(B, T, N, M, M + 1, dtype=a.dtype)
    rows[..., 0, :] = a
    for i in range(1, M):
        rows[..., i, i - 1] = 1.0
    vb = torch.zeros(B, T, N, M, dtype=v.dtype)
    vb[..., 0] = v
    h, h_final = bdlru(rows, vb, norm="none", backend=backend, initial_state=h0, output_final_state=True)
    assert_close("s", h[..., 0], s, torch.float64)
    assert_close("final", h_final, s_final, torch.float64)


def test_order1_hlru_equals_blocksize1_bdlru():
    logits, v, h0 = make_inputs("hlru", 2, 17, 4, 1, "softmax", torch.float64, True)
    s = hlru(logits, v, initial_state=h0)
    h = bdlru(logits.unsqueeze(-2), v.unsqueeze(-1), initial_state=h0)
    assert_close("s", h[..., 0], s, torch.float64)
    z = torch.sigmoid(logits[..., 1] - logits[..., 0])
    s_gru, prev = [], h0[..., 0]
    for t in range(logits.shape[1]):
        prev = (1 - z[:, t]) * prev + z[:, t] * v[:, t]
        s_gru.append(prev)
    assert_close("convex gate", torch.stack(s_gru, 1), s, torch.float64)


@pytest.mark.parametrize("kind", ["hlru", "bdlru"])
def test_streaming_in_chunks_equals_full(kind):
    logits, v, _ = make_inputs(kind, 2, 50, 3, 3, "softmax", torch.float64)
    op = OPS[kind]
    full, full_final = op(logits, v, output_final_state=True)
    state, parts = None, []
    for lo, hi in ((0, 13), (13, 14), (14, 50)):
        part, state = op(logits[:, lo:hi], v[:, lo:hi], initial_state=state, output_final_state=True)
        parts.append(part)
    assert_close("out", full, torch.cat(parts, 1), torch.float64)
    assert_close("final", full_final, state, torch.float64)


def test_dtypes_preserved():
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        logits, v, _ = make_inputs("bdlru", 1, 5, 2, 2, dtype=dtype)
        out, final = bdlru(logits, v, output_final_state=True)
        assert out.dtype == dtype
        assert final.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert set(TOL) == {torch.float64, torch.float32, torch.bfloat16, torch.float16}


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["hlru", "bdlru"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_auto_on_cuda_matches_reference(kind, dtype):
    from statemix.ops.dispatch import resolve_backend

    logits, v, h0 = make_inputs(kind, 2, 301, 16, 4, "softmax", dtype, True, device="cuda")
    assert resolve_backend("auto", logits) == "triton"
    got = run_with_grads(OPS[kind], logits, v, h0, "softmax", "auto")
    ref_in = [t.detach().cpu().requires_grad_() for t in (logits, v, h0)]
    want = run_with_grads(OPS[kind], *ref_in, "softmax", "reference")
    assert_close("out", want[0], got[0].cpu(), dtype)
    assert_close("final_state", want[1], got[1].cpu(), torch.float32)
    for name in want[2]:
        assert_close(name, want[2][name], got[2][name].cpu(), dtype)
