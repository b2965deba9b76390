"""Gated delta rule and gated DeltaProduct recurrences: sequential loops (the spec), a chunked WY-form
PyTorch version for any device, and fla's Triton kernels on CUDA.

Glossary: B batch, T time, H heads, K key dim, V value dim, n_h Householder steps per token.
State S `[B, H, K, V]`. Per token: `S <- exp(g_t) S`, then for each Householder step j
`S <- S + β_j k_j (v_j - S^T k_j)^T` (i.e. `(I - β k kᵀ) S + β k vᵀ`), output `o_t = S^T (scale · q_t)`.
β ∈ [0, 2] gives transition eigenvalues in [-1, 1].
"""
import torch
import torch.nn.functional as F

from .common import acc, no_autocast


def l2norm(x, eps=1e-6):
    """x / sqrt(Σx² + eps) over the last dim (fla's `l2norm`)."""
    return x * torch.rsqrt(acc(x).pow(2).sum(-1, keepdim=True) + eps).to(x.dtype)


@no_autocast
def gated_delta_product_ref(q, k, v, g, beta, scale=None, initial_state=None):
    """Sequential loop. q `[B, T, H, K]`, k `[B, T*n_h, H, K]`, v `[B, T*n_h, H, V]`, g `[B, T, H]` (log decay),
    beta `[B, T*n_h, H]` -> (o `[B, T, H, V]`, final state `[B, H, K, V]` fp32)."""
    dtype = q.dtype
    Bsz, T, H, K = q.shape
    n_h = k.shape[1] // T
    scale = K ** -0.5 if scale is None else scale
    q, k, v, g, beta = (acc(t) for t in (q, k, v, g, beta))
    S = q.new_zeros(Bsz, H, K, v.shape[-1]) if initial_state is None else acc(initial_state)
    out = []
    for t in range(T):
        S = S * torch.exp(g[:, t])[..., None, None]
        for j in range(t * n_h, (t + 1) * n_h):
            err = v[:, j] - torch.einsum("bhkv,bhk->bhv", S, k[:, j])
            S = S + beta[:, j, :, None, None] * k[:, j, ..., None] * err[..., None, :]
        out.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t] * scale))
    return torch.stack(out, dim=1).to(dtype), S


def gated_delta_rule_ref(q, k, v, g, beta, scale=None, initial_state=None):
    """Sequential gated delta rule: the n_h = 1 case. All inputs `[B, T, H, ·]`."""
    return gated_delta_product_ref(q, k, v, g, beta, scale, initial_state)


@no_autocast
def gated_delta_rule_chunked(q, k, v, g, beta, scale=None, initial_state=None, chunk_size=64):
    """Chunked WY form: inside a chunk, pseudo-values `U = (I + A)^{-1} (β V − β γ K S_0)` with
    `A_tj = β_t (γ_t/γ_j) k_tᵀ k_j` (j < t), solved by a unit lower-triangular solve; same contract as the ref."""
    dtype = q.dtype
    Bsz, T, H, K = q.shape
    Vd = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    chunk_size = min(chunk_size, T)
    pad = (-T) % chunk_size
    q, k, v = (F.pad(acc(t), (0, 0, 0, 0, 0, pad)) for t in (q, k, v))
    g, beta = (F.pad(acc(t), (0, 0, 0, pad)) for t in (g, beta))
    n, L = (T + pad) // chunk_size, chunk_size

    def chunks(t):  # [B, T, H, ...] -> [B, H, n, L, ...]
        return t.view(Bsz, n, L, H, *t.shape[3:]).transpose(2, 3).transpose(1, 2)

    q, k, v, g, beta = chunks(q) * scale, chunks(k), chunks(v), chunks(g), chunks(beta)
    G = torch.cumsum(g, dim=-1)  # [B, H, n, L]
    diff = G[..., :, None] - G[..., None, :]
    lower = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    gamma_ratio = torch.exp(diff.masked_fill(~lower, float("-inf")))  # γ_t/γ_j for j <= t
    kk = k @ k.transpose(-1, -2)
    A = (beta[..., None] * kk * gamma_ratio).tril(-1)
    eye = torch.eye(L, device=q.device, dtype=q.dtype)
    rhs = torch.cat([beta[..., None] * v, (beta * torch.exp(G))[..., None] * k], dim=-1)
    sol = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
    u, w = sol[..., :Vd], sol[..., Vd:]
    qk = (q @ k.transpose(-1, -2)) * gamma_ratio
    S = q.new_zeros(Bsz, H, K, Vd) if initial_state is None else acc(initial_state)
    out = []
    for i in range(n):
        U = u[:, :, i] - w[:, :, i] @ S
        Gi = G[:, :, i]
        out.append((q[:, :, i] * torch.exp(Gi)[..., None]) @ S + qk[:, :, i] @ U)
        to_end = torch.exp(Gi[..., -1:] - Gi)[..., None]
        S = torch.exp(Gi[..., -1])[..., None, None] * S + (k[:, :, i] * to_end).transpose(-1, -2) @ U
    o = torch.stack(out, dim=2).reshape(Bsz, H, n * L, Vd).transpose(1, 2)[:, :T]
    return o.to(dtype), S


def interleave_products(q, g, n_h):
    """Gated DeltaProduct as a gated delta rule over T*n_h sub-steps: the decay on the first sub-step,
    the query on the last. q `[B, T, H, K]`, g `[B, T, H]` -> (q', g') over `T*n_h` steps."""
    Bsz, T, H, K = q.shape
    q_sub = q.new_zeros(Bsz, T, n_h, H, K)
    q_sub[:, :, -1] = q
    g_sub = g.new_zeros(Bsz, T, n_h, H)
    g_sub[:, :, 0] = g
    return q_sub.flatten(1, 2), g_sub.flatten(1, 2)


def gated_delta_product_chunked(q, k, v, g, beta, scale=None, initial_state=None, chunk_size=64):
    """Gated DeltaProduct through `gated_delta_rule_chunked` on the interleaved sequence; contract as the ref."""
    T, n_h = q.shape[1], k.shape[1] // q.shape[1]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q_sub, g_sub = interleave_products(q, g, n_h)
    o, S = gated_delta_rule_chunked(q_sub, k, v, g_sub, beta, scale, initial_state, chunk_size)
    return o.view(o.shape[0], T, n_h, *o.shape[2:])[:, :, -1], S


def gated_delta_rule_library(q, k, v, g, beta, scale=None, initial_state=None, chunk_size=64):
    """fla's `chunk_gated_delta_rule` (Triton, CUDA; its chunk is fixed at 64); contract as the ref."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    return chunk_gated_delta_rule(q, k, v, g, beta, scale=scale, initial_state=initial_state,
                                  output_final_state=True)


def gated_delta_product_library(q, k, v, g, beta, scale=None, initial_state=None, chunk_size=64):
    """fla's `chunk_gated_delta_product` (Triton, CUDA, 16-bit inputs only, chunk fixed at 64); contract as the ref."""
    from fla.ops.gated_delta_product import chunk_gated_delta_product

    dtype = q.dtype
    half = (lambda t: t.bfloat16()) if dtype == torch.float32 else (lambda t: t)
    o, S = chunk_gated_delta_product(half(q), half(k), half(v), g.float(), half(beta), k.shape[1] // q.shape[1],
                                     scale=scale, initial_state=initial_state, output_final_state=True)
    return o.to(dtype), S


def library_status(training):
    """(usable, reason) for fla's kernels here. fla refuses the gated backward on Hopper with
    triton >= 3.4, < 3.7.1 (wrong results upstream), so training there must use the PyTorch path."""
    if not torch.cuda.is_available():
        return False, "no CUDA"
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule  # noqa: F401
        from fla.utils import IS_NVIDIA_HOPPER, TRITON_ABOVE_3_4_0, TRITON_ABOVE_3_7_1
    except ImportError as err:
        return False, f"fla not importable: {err}"
    if training and IS_NVIDIA_HOPPER and TRITON_ABOVE_3_4_0 and not TRITON_ABOVE_3_7_1:
        return False, "fla gated backward disabled on Hopper for triton in [3.4, 3.7.1)"
    return True, "ok"
