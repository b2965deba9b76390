"""H-LRU forward: a sequential scan per time chunk, lag state in registers.

The M lagged values of each channel sit in a circular buffer: `s_τ` lives in slot
`τ mod M`, so a step writes one slot and shifts nothing. At step t, slot p holds
`s_{t-k}` with `k = ((t-1-p) mod M) + 1`, so lane p loads logit index `k-1`: the
coefficients are loaded rotated instead of rotating the state. See README.md.
"""
import triton
import triton.language as tl

from .common import chunk_tile, norm_fwd


@triton.jit(do_not_specialize=["NORM", "T", "L", "NC"])
def hlru_fwd_kernel(
    x_ptr, v_ptr, s_ptr, hin_ptr, e_ptr, phi_ptr, fin_ptr,
    T, N, M, L, NC, NORM,
    MP: tl.constexpr, BN: tl.constexpr, SUMMARY: tl.constexpr, NUM_STAGES: tl.constexpr,
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
    for t in tl.range(t0, t1, num_stages=NUM_STAGES):
        row = row_b + t * N + n
        k = (t + M * MP - 1 - p) % M
        xl = tl.load(x_ptr + (row * K)[:, None] + k[None, :], mask=m2, other=0.0).to(cd)
        g = tl.load(x_ptr + (row * K + M)[:, None], mask=mn[:, None], other=0.0).to(cd)
        v = tl.load(v_ptr + row, mask=mn, other=0.0).to(cd)
        a, a0 = norm_fwd(xl, g, m2, NORM, 1)
        s = tl.sum(a * h, axis=1) + tl.sum(a0, axis=1) * v
        here = p[None, :] == (t % M)
        if SUMMARY:
            q = tl.sum(a[:, :, None] * P, axis=1)
            P = tl.where(here[:, :, None], q[:, None, :], P)
        else:
            tl.store(s_ptr + row, s.to(s_ptr.dtype.element_ty), mask=mn)
        h = tl.where(here, s[:, None], h)
    if SUMMARY:
        tl.store(e_ptr + (rc * MP)[:, None] + p[None, :], h, mask=m2)
        q2 = p[:, None] * MP + p[None, :]
        tl.store(phi_ptr + (rc * MP * MP)[:, None, None] + q2[None, :, :], P, mask=m2[:, :, None] & mp[None, None, :])
    else:
        if c == NC - 1:
            tl.store(fin_ptr + (r * MP)[:, None] + p[None, :], h, mask=m2)

