"""Input factories and tolerances shared by tests and benchmarks."""
import torch

TOL = {
    torch.float64: dict(atol=1e-10, rtol=1e-8),
    torch.float32: dict(atol=2e-5, rtol=1e-4),
    torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
}


def assert_close(name, ref, tri, dtype):
    """Compare `tri` to `ref` with the tolerance of `dtype`, naming the tensor on failure."""
    torch.testing.assert_close(tri.float(), ref.float(), **TOL[dtype], msg=lambda m: f"{name}: {m}")


def gate_scale(norm, M):
    """Logit scale that keeps the un-normalised `none` recurrence stable over long T."""
    return 0.5 / (M + 1) if norm == "none" else 1.0


def make_inputs(kind, B, T, N, M, norm="softmax", dtype=torch.float32, initial_state=False, seed=0, device="cpu"):
    """Random (logits, v, h0) for `kind` in {"hlru", "bdlru"}; all leaf tensors with grad."""
    g = torch.Generator().manual_seed(seed)
    lshape = (B, T, N, M + 1) if kind == "hlru" else (B, T, N, M, M + 1)
    vshape = (B, T, N) if kind == "hlru" else (B, T, N, M)
    logits = torch.randn(lshape, generator=g) * gate_scale(norm, M)
    v = torch.randn(vshape, generator=g)
    h0 = torch.randn(B, N, M, generator=g) if initial_state else None
    out = [x.to(device=device, dtype=dtype).requires_grad_() for x in (logits, v)]
    state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    out.append(None if h0 is None else h0.to(device=device, dtype=state_dtype).requires_grad_())
    return tuple(out)
