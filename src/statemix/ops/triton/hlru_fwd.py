"""H-LRU forward: a sequential scan per time chunk, lag state in registers.

The M lagged values of each channel sit in a circular buffer: `s_τ` lives in slot
`τ mod M`, so a step writes one slot and shifts nothing. At step t, slot p holds
`s_{t-k}` with `k = ((t-1-p) mod M) + 1`, so lane p loads logit index `k-1`: the
coefficients are loaded rotated instead of rotating the state. Logits are loaded and
normalised TB steps at a time; only the dot product with the lags is sequential.
See README.md.
"""
import triton
import triton.language as tl

from .common import chunk_tile, norm_fwd, pick


@triton.jit(do_not_specialize=["T", "N", "M", "L", "NC"])
def hlru_fwd_kernel(
    x_ptr, v_ptr, s_ptr, hin_ptr, e_ptr, phi_ptr, fin_ptr,
    T, N, M, L, NC, NORM: tl.constexpr,
    MP: tl.constexpr, BN: tl.constexpr, TB: tl.constexpr, SUMMARY: tl.constexpr, NUM_STAGES: tl.constexpr,
):
    """One program: BN channels of one batch element over one chunk of L steps.

    SUMMARY: start from zero and return the chunk's end state `e` and its transition
    `phi` (slot coordinates). Otherwise start from `hin[c]`, write `s`, and the last
    chunk writes its end state to `fin`.
    """
    b, c, n, p, mn, mp, m2, r, rc, t0, t1 = chunk_tile(T, N, M, L, MP, BN)
    cd = hin_ptr.dtype.element_ty
    K = M + 1
    if SUMMARY:
        h = tl.zeros((BN, MP), cd)
        eye = (p[:, None] == p[None, :]) & mp[None, :]
        P = tl.where(m2[:, :, None] & eye[None, :, :], 1.0, 0.0).to(cd)
    else:
        h = tl.load(hin_ptr + (rc * MP)[:, None] + p[None, :], mask=m2, other=0.0)
    row_b = b.to(tl.int64) * T * N
    q = tl.arange(0, TB)
    for tb in tl.range(t0, t1, TB, num_stages=NUM_STAGES):
        t = tb + q
        mt = (t < t1)[:, None] & mn[None, :]
        mt2 = mt[:, :, None] & mp[None, None, :]
        row = row_b + t[:, None] * N + n[None, :]
        k = (t[:, None] + M * MP - 1 - p[None, :]) % M
        xl = tl.load(x_ptr + (row * K)[:, :, None] + k[:, None, :], mask=mt2, other=0.0).to(cd)
        g = tl.load(x_ptr + (row * K + M)[:, :, None], mask=mt[:, :, None], other=0.0).to(cd)
        v = tl.load(v_ptr + row, mask=mt, other=0.0).to(cd)
        a, a0 = norm_fwd(xl, g, mt2, NORM, 2)
        u = tl.sum(a0, axis=2) * v
        out = tl.zeros((TB, BN), cd)
        for i in tl.static_range(TB):
            ai = pick(a, (q == i)[:, None, None])
            s = tl.sum(ai * h, axis=1) + pick(u, (q == i)[:, None])
            here = (p[None, :] == (tb + i) % M) & (tb + i < t1)
            if SUMMARY:
                row0 = tl.sum(ai[:, :, None] * P, axis=1)
                P = tl.where(here[:, :, None], row0[:, None, :], P)
            else:
                out = tl.where((q == i)[:, None], s[None, :], out)
            h = tl.where(here, s[:, None], h)
        if not SUMMARY:
            tl.store(s_ptr + row, out.to(s_ptr.dtype.element_ty), mask=mt)
    if SUMMARY:
        tl.store(e_ptr + (rc * MP)[:, None] + p[None, :], h, mask=m2)
        q2 = p[:, None] * MP + p[None, :]
        tl.store(phi_ptr + (rc * MP * MP)[:, None, None] + q2[None, :, :], P, mask=m2[:, :, None] & mp[None, None, :])
    else:
        if c == NC - 1:
            tl.store(fin_ptr + (r * MP)[:, None] + p[None, :], h, mask=m2)
