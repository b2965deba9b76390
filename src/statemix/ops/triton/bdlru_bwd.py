"""BD-LRU backward: `λ_t = dh_t + A_{t+1}ᵀ λ_{t+1}`, walked right to left per chunk.

The loop carries `μ = A_tᵀ λ_t`, so each step needs only its own logits; `h_{t-1}`
for `dA_t = λ_t h_{t-1}ᵀ` is read back from the forward output.
"""
import triton
import triton.language as tl

from .common import chunk_tile, norm_bwd, norm_fwd


@triton.jit(do_not_specialize=["NORM", "T", "L"])
def bdlru_bwd_kernel(
    x_ptr, v_ptr, h_ptr, h0_ptr, dh_ptr, mu_ptr, f_ptr, dx_ptr, dv_ptr, dh0_ptr,
    T, N, M, L, NORM,
    MP: tl.constexpr, BN: tl.constexpr, SUMMARY: tl.constexpr, NUM_STAGES: tl.constexpr,
):
    """One program: BN blocks of one batch element over one chunk, right to left.

    SUMMARY: start from a zero adjoint and return the chunk's adjoint at its start in
    `f`. Otherwise start from `mu[c]`, write the gradients, and chunk 0 writes the
    adjoint of the initial state to `dh0`.
    """
    b, c, n, p, mn, mp, m2, r, rc, t0, t1 = chunk_tile(T, N, M, L, MP, BN)
    cd = mu_ptr.dtype.element_ty
    m3 = m2[:, :, None] & mp[None, None, :]
    K = M + 1
    row_b = b.to(tl.int64) * T * N
    ij = p[:, None] * K + p[None, :]
    if SUMMARY:
        mu = tl.zeros((BN, MP), cd)
    else:
        mu = tl.load(mu_ptr + (rc * MP)[:, None] + p[None, :], mask=m2, other=0.0)
    for j in tl.range(0, t1 - t0, num_stages=NUM_STAGES):
        t = t1 - 1 - j
        row = row_b + t * N + n
        base = row * (M * K)
        xl = tl.load(x_ptr + base[:, None, None] + ij[None, :, :], mask=m3, other=0.0).to(cd)
        g = tl.load(x_ptr + (base[:, None] + p[None, :] * K + M)[:, :, None], mask=m2[:, :, None], other=0.0).to(cd)
        dh = tl.load(dh_ptr + (row * M)[:, None] + p[None, :], mask=m2, other=0.0).to(cd)
        a, a0 = norm_fwd(xl, g, m3, NORM, 2)
        lam = dh + mu
        if not SUMMARY:
            v = tl.load(v_ptr + (row * M)[:, None] + p[None, :], mask=m2, other=0.0).to(cd)
            tn = (n * 0 + t)[:, None]
            hp = tl.load(h_ptr + ((row - N) * M)[:, None] + p[None, :], mask=m2 & (tn > 0), other=0.0).to(cd)
            hp += tl.load(h0_ptr + (r * MP)[:, None] + p[None, :], mask=m2 & (tn == 0), other=0.0)
            da = lam[:, :, None] * hp[:, None, :]
            da0 = (lam * v)[:, :, None]
            dxl, dg = norm_bwd(xl, g, a, a0, da, da0, m3, NORM, 2)
            tl.store(dx_ptr + base[:, None, None] + ij[None, :, :], dxl.to(dx_ptr.dtype.element_ty), mask=m3)
            tl.store(dx_ptr + (base[:, None] + p[None, :] * K + M)[:, :, None], dg.to(dx_ptr.dtype.element_ty),
                     mask=m2[:, :, None])
            tl.store(dv_ptr + (row * M)[:, None] + p[None, :], (lam * tl.sum(a0, axis=2)).to(dv_ptr.dtype.element_ty),
                     mask=m2)
        mu = tl.sum(a * lam[:, :, None], axis=1)
    if SUMMARY:
        tl.store(f_ptr + (rc * MP)[:, None] + p[None, :], mu, mask=m2)
    else:
        if c == 0:
            tl.store(dh0_ptr + (r * MP)[:, None] + p[None, :], mu, mask=m2)

