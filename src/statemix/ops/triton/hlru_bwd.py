"""H-LRU backward: the adjoint scan run right to left over the same chunks.

The adjoint `λ` of the lag state uses the same circular slots as the forward, so
`Cᵀλ` is one masked write plus `a·λ_0`. The lag window `x_{t-1}` needed for the
coefficient gradients is rebuilt from the saved outputs, one value per step.
"""
import triton
import triton.language as tl

from .common import chunk_tile, norm_bwd, norm_fwd


@triton.jit(do_not_specialize=["NORM", "T", "L"])
def hlru_bwd_kernel(
    x_ptr, v_ptr, s_ptr, h0_ptr, ds_ptr, mu_ptr, f_ptr, dx_ptr, dv_ptr, dh0_ptr,
    T, N, M, L, NORM,
    MP: tl.constexpr, BN: tl.constexpr, SUMMARY: tl.constexpr, NUM_STAGES: tl.constexpr,
):
    """One program: BN channels of one batch element over one chunk, right to left.

    SUMMARY: start from a zero adjoint and return the chunk's adjoint at its start in
    `f`. Otherwise start from `mu[c]`, write the gradients, and chunk 0 writes the
    adjoint of the initial state (slots) to `dh0`.
    """
    b, c, n, p, mn, mp, m2, r, rc, t0, t1 = chunk_tile(T, N, M, L, MP, BN)
    cd = mu_ptr.dtype.element_ty
    K = M + 1
    row_b = b.to(tl.int64) * T * N
    if SUMMARY:
        lam = tl.zeros((BN, MP), cd)
        w = lam
    else:
        lam = tl.load(mu_ptr + (rc * MP)[:, None] + p[None, :], mask=m2, other=0.0)
        tau = t1 - 1 - (t1 - 1 + M * MP - p) % M
        ws = tl.load(s_ptr + row_b + tau[None, :] * N + n[:, None], mask=m2 & (tau >= 0)[None, :], other=0.0)
        w0 = tl.load(h0_ptr + (r * MP)[:, None] + p[None, :], mask=m2 & (tau < 0)[None, :], other=0.0)
        w = ws.to(cd) + w0
    for j in tl.range(0, t1 - t0, num_stages=NUM_STAGES):
        t = t1 - 1 - j
        row = row_b + t * N + n
        k = (t + M * MP - 1 - p) % M
        here = p[None, :] == (t % M)
        ds = tl.load(ds_ptr + row, mask=mn, other=0.0).to(cd)
        xl = tl.load(x_ptr + (row * K)[:, None] + k[None, :], mask=m2, other=0.0).to(cd)
        g = tl.load(x_ptr + (row * K + M)[:, None], mask=mn[:, None], other=0.0).to(cd)
        a, a0 = norm_fwd(xl, g, m2, NORM, 1)
        lam = tl.where(here, lam + ds[:, None], lam)
        gt = tl.sum(tl.where(here, lam, 0.0), axis=1)
        if not SUMMARY:
            v = tl.load(v_ptr + row, mask=mn, other=0.0).to(cd)
            tn = n * 0 + t
            old = tl.load(s_ptr + row - M * N, mask=mn & (tn >= M), other=0.0).to(cd)
            old += tl.load(h0_ptr + r * MP + tn % M, mask=mn & (tn < M), other=0.0)
            w = tl.where(here, old[:, None], w)
            da = gt[:, None] * w
            da0 = (gt * v)[:, None]
            dxl, dg = norm_bwd(xl, g, a, a0, da, da0, m2, NORM, 1)
            tl.store(dx_ptr + (row * K)[:, None] + k[None, :], dxl.to(dx_ptr.dtype.element_ty), mask=m2)
            tl.store(dx_ptr + (row * K + M)[:, None], dg.to(dx_ptr.dtype.element_ty), mask=mn[:, None])
            tl.store(dv_ptr + row, (gt * tl.sum(a0, axis=1)).to(dv_ptr.dtype.element_ty), mask=mn)
        lam = tl.where(here, 0.0, lam) + a * gt[:, None]
    if SUMMARY:
        tl.store(f_ptr + (rc * MP)[:, None] + p[None, :], lam, mask=m2)
    else:
        if c == 0:
            tl.store(dh0_ptr + (r * MP)[:, None] + p[None, :], lam, mask=m2)

