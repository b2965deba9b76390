"""BD-LRU backward: `λ_t = dh_t + A_{t+1}ᵀ λ_{t+1}`, walked right to left per chunk.

The loop carries `μ = A_tᵀ λ_t`, so each step needs only its own logits. Tiles of TB
steps are loaded time-reversed; only the `μ` recursion is sequential, while the
gradients of a tile (`dA_t = λ_t h_{t-1}ᵀ`, with `h_{t-1}` read back from the forward
output, and the normalisation adjoint) are computed on the whole tile.
"""
import triton
import triton.language as tl

from .common import chunk_tile, norm_bwd, norm_fwd, pick


@triton.jit(do_not_specialize=["T", "N", "M", "L"])
def bdlru_bwd_kernel(
    x_ptr, v_ptr, h_ptr, h0_ptr, dh_ptr, mu_ptr, f_ptr, dx_ptr, dv_ptr, dh0_ptr,
    T, N, M, L, NORM: tl.constexpr,
    MP: tl.constexpr, BN: tl.constexpr, TB: tl.constexpr, SUMMARY: tl.constexpr, NUM_STAGES: tl.constexpr,
):
    """One program: BN blocks of one batch element over one chunk, right to left.

    SUMMARY: start from a zero adjoint and return the chunk's adjoint at its start in
    `f`. Otherwise start from `mu[c]`, write the gradients, and chunk 0 writes the
    adjoint of the initial state to `dh0`.
    """
    b, c, n, p, mn, mp, m2, r, rc, t0, t1 = chunk_tile(T, N, M, L, MP, BN)
    cd = mu_ptr.dtype.element_ty
    K = M + 1
    row_b = b.to(tl.int64) * T * N
    ij = p[:, None] * K + p[None, :]
    q = tl.arange(0, TB)
    if SUMMARY:
        mu = tl.zeros((BN, MP), cd)
    else:
        mu = tl.load(mu_ptr + (rc * MP)[:, None] + p[None, :], mask=m2, other=0.0)
    for j in tl.range(0, t1 - t0, TB, num_stages=NUM_STAGES):
        t = t1 - 1 - j - q
        mt2 = (t >= t0)[:, None, None] & m2[None]
        mt3 = mt2[:, :, :, None] & mp[None, None, None, :]
        row = row_b + t[:, None] * N + n[None, :]
        base = row * (M * K)
        xl = tl.load(x_ptr + base[:, :, None, None] + ij[None, None], mask=mt3, other=0.0).to(cd)
        gp = x_ptr + (base[:, :, None] + p[None, None, :] * K + M)
        g = tl.load(gp[:, :, :, None], mask=mt2[:, :, :, None], other=0.0).to(cd)
        dh = tl.load(dh_ptr + (row * M)[:, :, None] + p[None, None, :], mask=mt2, other=0.0).to(cd)
        a, a0 = norm_fwd(xl, g, mt3, NORM, 3)
        lam = tl.zeros((TB, BN, MP), cd)
        for i in tl.static_range(TB):
            li = pick(dh, (q == i)[:, None, None]) + mu
            lam = tl.where((q == i)[:, None, None], li[None], lam)
            mu_i = tl.sum(pick(a, (q == i)[:, None, None, None]) * li[:, :, None], axis=1)
            mu = tl.where(t1 - 1 - j - i >= t0, mu_i, mu)
        if not SUMMARY:
            v = tl.load(v_ptr + (row * M)[:, :, None] + p[None, None, :], mask=mt2, other=0.0).to(cd)
            hrow = ((row - N) * M)[:, :, None] + p[None, None, :]
            hp = tl.load(h_ptr + hrow, mask=mt2 & (t >= 1)[:, None, None], other=0.0).to(cd)
            h0 = tl.load(h0_ptr + (r * MP)[:, None] + p[None, :], mask=m2, other=0.0)
            hp += tl.where((t == 0)[:, None, None], h0[None], 0.0)
            dxl, dg = norm_bwd(xl, g, a, a0, lam[:, :, :, None] * hp[:, :, None, :], (lam * v)[:, :, :, None], mt3,
                               NORM, 3)
            dt = dx_ptr.dtype.element_ty
            tl.store(dx_ptr + base[:, :, None, None] + ij[None, None], dxl.to(dt), mask=mt3)
            tl.store(dx_ptr + (base[:, :, None] + p[None, None, :] * K + M)[:, :, :, None], dg.to(dt),
                     mask=mt2[:, :, :, None])
            tl.store(dv_ptr + (row * M)[:, :, None] + p[None, None, :], (lam * tl.sum(a0, axis=3)).to(dt), mask=mt2)
    if SUMMARY:
        tl.store(f_ptr + (rc * MP)[:, None] + p[None, :], mu, mask=m2)
    else:
        if c == 0:
            tl.store(dh0_ptr + (r * MP)[:, None] + p[None, :], mu, mask=m2)
