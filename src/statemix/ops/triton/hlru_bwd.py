"""H-LRU backward: the adjoint scan run right to left over the same chunks.

The adjoint `λ` of the lag state uses the same circular slots as the forward, so
`Cᵀλ` is one masked write plus `a·λ_0`. Tiles of TB steps are loaded time-reversed;
only that recursion is sequential. The gradients of a tile are computed at once: the
lag that lane p multiplies at step t is `s_{t-k}`, read back from the forward output
(or the initial state) at the same rotated index as the logits.
"""
import triton
import triton.language as tl

from .common import chunk_tile, norm_bwd, norm_fwd, pick


@triton.jit(do_not_specialize=["T", "N", "M", "L"])
def hlru_bwd_kernel(
    x_ptr, v_ptr, s_ptr, h0_ptr, ds_ptr, mu_ptr, f_ptr, dx_ptr, dv_ptr, dh0_ptr,
    T, N, M, L, NORM: tl.constexpr,
    MP: tl.constexpr, BN: tl.constexpr, TB: tl.constexpr, SUMMARY: tl.constexpr, NUM_STAGES: tl.constexpr,
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
    q = tl.arange(0, TB)
    if SUMMARY:
        lam = tl.zeros((BN, MP), cd)
    else:
        lam = tl.load(mu_ptr + (rc * MP)[:, None] + p[None, :], mask=m2, other=0.0)
    for j in tl.range(0, t1 - t0, TB, num_stages=NUM_STAGES):
        t = t1 - 1 - j - q
        mt = (t >= t0)[:, None] & mn[None, :]
        mt2 = mt[:, :, None] & mp[None, None, :]
        row = row_b + t[:, None] * N + n[None, :]
        k = (t[:, None] + M * MP - 1 - p[None, :]) % M
        xl = tl.load(x_ptr + (row * K)[:, :, None] + k[:, None, :], mask=mt2, other=0.0).to(cd)
        g = tl.load(x_ptr + (row * K + M)[:, :, None], mask=mt[:, :, None], other=0.0).to(cd)
        ds = tl.load(ds_ptr + row, mask=mt, other=0.0).to(cd)
        a, a0 = norm_fwd(xl, g, mt2, NORM, 2)
        gt = tl.zeros((TB, BN), cd)
        for i in tl.static_range(TB):
            ti = t1 - 1 - j - i
            here = (p[None, :] == (ti + M * TB) % M) & (ti >= t0)
            lam = tl.where(here, lam + pick(ds, (q == i)[:, None])[:, None], lam)
            g_i = tl.sum(tl.where(here, lam, 0.0), axis=1)
            gt = tl.where((q == i)[:, None], g_i[None, :], gt)
            mu = tl.where(here, 0.0, lam) + pick(a, (q == i)[:, None, None]) * g_i[:, None]
            lam = tl.where(ti >= t0, mu, lam)
        if not SUMMARY:
            v = tl.load(v_ptr + row, mask=mt, other=0.0).to(cd)
            tau = t[:, None] - 1 - k
            lag = tl.load(s_ptr + row_b + tau[:, None, :] * N + n[None, :, None], mask=mt2 & (tau >= 0)[:, None, :],
                          other=0.0).to(cd)
            h0 = tl.load(h0_ptr + (r * MP)[:, None] + p[None, :], mask=m2, other=0.0)
            lag += tl.where((tau < 0)[:, None, :], h0[None], 0.0)
            dxl, dg = norm_bwd(xl, g, a, a0, gt[:, :, None] * lag, (gt * v)[:, :, None], mt2, NORM, 2)
            dt = dx_ptr.dtype.element_ty
            tl.store(dx_ptr + (row * K)[:, :, None] + k[:, None, :], dxl.to(dt), mask=mt2)
            tl.store(dx_ptr + (row * K + M)[:, :, None], dg.to(dt), mask=mt[:, :, None])
            tl.store(dv_ptr + row, (gt * tl.sum(a0, axis=2)).to(dt), mask=mt)
    if SUMMARY:
        tl.store(f_ptr + (rc * MP)[:, None] + p[None, :], lam, mask=m2)
    else:
        if c == 0:
            tl.store(dh0_ptr + (r * MP)[:, None] + p[None, :], lam, mask=m2)
