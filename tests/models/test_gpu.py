"""Library kernels (mamba-ssm SSD, fla gated delta rule / product) against the PyTorch versions, on CUDA."""
import pytest
import torch

from statemix.models import registry
from statemix.mixers.delta_rule import (gated_delta_product_chunked, gated_delta_product_library,
                                        gated_delta_product_ref, gated_delta_rule_chunked,
                                        gated_delta_rule_library, l2norm, library_status)
from statemix.mixers.mamba2 import ssd_chunked, ssd_library, ssd_ref

pytestmark = pytest.mark.gpu


def assert_rel(name, got, want, tol):
    """max |got - want| <= tol * max |want| (the kernels use TF32 or bf16 inside)."""
    err, scale = (got.float() - want.float()).abs().max().item(), want.abs().max().item()
    assert err <= tol * scale, f"{name}: max error {err:.3g} > {tol} x scale {scale:.3g}"


def cuda_randn(*shape, seed=0):
    return torch.randn(*shape, device="cuda", generator=torch.Generator(device="cuda").manual_seed(seed))


def test_mamba_ssd_kernel_matches_torch():
    pytest.importorskip("mamba_ssm.ops.triton.ssd_combined")
    B, T, H, P, S = 2, 200, 4, 16, 8
    x, Bm, Cm = cuda_randn(B, T, H, P, seed=1), cuda_randn(B, T, 1, S, seed=2), cuda_randn(B, T, 1, S, seed=3)
    dt = 0.1 * torch.rand(B, T, H, device="cuda")
    A, D = -4 * torch.rand(H, device="cuda"), cuda_randn(H, seed=4)
    leaves = [t.clone().requires_grad_() for t in (x, dt, A, Bm, Cm)]
    outs = []
    for fn in (ssd_library, ssd_chunked):
        ins = [t.detach().clone().requires_grad_() for t in leaves]
        y, h = fn(*ins, D)
        y.square().sum().backward()
        outs.append((y, h, [t.grad for t in ins]))
    y_loop, h_loop = ssd_ref(x[:, :40], dt[:, :40], A, Bm[:, :40], Cm[:, :40], D)
    assert_rel("y vs loop", outs[0][0][:, :40], y_loop, 5e-3)
    assert_rel("y", outs[0][0], outs[1][0], 5e-3)
    assert_rel("final state", outs[0][1], outs[1][1], 5e-3)
    for name, a, b in zip(("dx", "ddt", "dA", "dB", "dC"), outs[0][2], outs[1][2]):
        assert_rel(name, a, b, 1e-2)


def delta_inputs(B, T, n_h, H=2, K=32):
    q, k = l2norm(cuda_randn(B, T, H, K, seed=1)), l2norm(cuda_randn(B, T * n_h, H, K, seed=2))
    v = cuda_randn(B, T * n_h, H, K, seed=3)
    g = torch.nn.functional.logsigmoid(cuda_randn(B, T, H, seed=4) + 3)
    beta = 2 * torch.rand(B, T * n_h, H, device="cuda")
    return q, k, v, g, beta


@pytest.mark.parametrize("n_h", [1, 2])
def test_fla_forward_matches_torch(n_h):
    pytest.importorskip("fla.ops.gated_delta_rule")
    q, k, v, g, beta = delta_inputs(2, 150, n_h)
    lib = gated_delta_rule_library if n_h == 1 else gated_delta_product_library
    half = n_h > 1
    with torch.no_grad():
        y_lib, s_lib = lib(*((t.bfloat16() if half and i != 3 else t) for i, t in enumerate((q, k, v, g, beta))))
        y_ref, s_ref = (gated_delta_rule_chunked if n_h == 1 else gated_delta_product_chunked)(q, k, v, g, beta)
        y_loop, _ = gated_delta_product_ref(q[:, :30], k[:, :30 * n_h], v[:, :30 * n_h], g[:, :30],
                                            beta[:, :30 * n_h])
    tol = 3e-2 if half else 5e-3
    assert_rel("torch vs loop", y_ref[:, :30], y_loop, 1e-4)
    assert_rel("y", y_lib, y_ref, tol)
    assert_rel("final state", s_lib, s_ref, tol)


def test_fla_backward_agrees_or_is_refused():
    """Where library_status allows training, fla's gradients match; where it refuses, fla raises too."""
    pytest.importorskip("fla.ops.gated_delta_rule")
    leaves = [t.requires_grad_() for t in delta_inputs(2, 130, 1)]
    usable, _ = library_status(training=True)
    y, _ = gated_delta_rule_library(*leaves)
    if not usable:
        with pytest.raises(RuntimeError, match="Hopper"):
            y.sum().backward()
        return
    grads = torch.autograd.grad(y.square().sum(), leaves)
    ins = [t.detach().clone().requires_grad_() for t in leaves]
    y_ref, _ = gated_delta_rule_chunked(*ins)
    for name, a, b in zip("q k v g beta".split(), grads, torch.autograd.grad(y_ref.square().sum(), ins)):
        assert_rel(f"d{name}", a, b, 1e-2)


@pytest.mark.parametrize("name", ["mamba2", "gdn", "dproduct"])
def test_layer_auto_backend_trains_on_cuda(name):
    """backend='auto' picks whatever runs here; its output matches the PyTorch backend and it trains."""
    torch.manual_seed(0)
    layer = registry[name].build(64, 256).cuda()
    x = cuda_randn(2, 100, 64)
    y = layer(x)
    layer.backend = "torch"
    y_torch = layer(x)
    assert_rel(name, y, y_torch, 3e-2 if name == "dproduct" else 5e-3)
    layer.backend = "auto"
    layer(x).square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
