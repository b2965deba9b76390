"""BD-LRU forward: a sequential scan per time chunk, one M×M block matvec per step.

A program holds BN blocks of one batch element; the state `h [BN, MP]` stays in
registers and each step streams the blocks' logits `[BN, M, M+1]` once.
"""
import triton
import triton.language as tl

from .common import chunk_tile, norm_fwd


@triton.jit(do_not_specialize=["NORM", "T", "L", "NC"])
def bdlru_fwd_kernel(
    x_ptr, v_ptr, h_ptr, hin_ptr, e_ptr, phi_ptr, fin_ptr,
    T, N, M, L, NC, NORM,
    MP: tl.constexpr, BN: tl.constexpr, SUMMARY: tl.constexpr, NUM_STAGES: tl.constexpr,
):
    """One program: BN blocks of one batch element over one chunk of L steps.

    SUMMARY: start from zero and return the chunk's end state `e` and transition
    `phi = A_last ⋯ A_first`. Otherwise start from `hin[c]`, write `h`, and the last
    chunk writes its end state to `fin`.
    """
    b, c, n, p, mn, mp, m2, r, rc, t0, t1 = chunk_tile(T, N, M, L, MP, BN)
    cd = hin_ptr.dtype.element_ty
    m3 = m2[:, :, None] & mp[None, None, :]
    K = M + 1
    if SUMMARY:
        h = tl.zeros((BN, MP), cd)
        P = tl.where(m3 & (p[:, None] == p[None, :])[None, :, :], 1.0, 0.0).to(cd)
    else:
        h = tl.load(hin_ptr + (rc * MP)[:, None] + p[None, :], mask=m2, other=0.0)
    row_b = b.to(tl.int64) * T * N
    ij = p[:, None] * K + p[None, :]
    for t in tl.range(t0, t1, num_stages=NUM_STAGES):
        row = row_b + t * N + n
        base = row * (M * K)
        xl = tl.load(x_ptr + base[:, None, None] + ij[None, :, :], mask=m3, other=0.0).to(cd)
        g = tl.load(x_ptr + (base[:, None] + p[None, :] * K + M)[:, :, None], mask=m2[:, :, None], other=0.0).to(cd)
        v = tl.load(v_ptr + (row * M)[:, None] + p[None, :], mask=m2, other=0.0).to(cd)
        a, a0 = norm_fwd(xl, g, m3, NORM, 2)
        if SUMMARY:
            P = tl.sum(a[:, :, :, None] * P[:, None, :, :], axis=2)
        h = tl.sum(a * h[:, None, :], axis=2) + tl.sum(a0, axis=2) * v
        if not SUMMARY:
            tl.store(h_ptr + (row * M)[:, None] + p[None, :], h.to(h_ptr.dtype.element_ty), mask=m2)
    if SUMMARY:
        tl.store(e_ptr + (rc * MP)[:, None] + p[None, :], h, mask=m2)
        q2 = p[:, None] * MP + p[None, :]
        tl.store(phi_ptr + (rc * MP * MP)[:, None, None] + q2[None, :, :], P, mask=m3)
    else:
        if c == NC - 1:
            tl.store(fin_ptr + (r * MP)[:, None] + p[None, :], h, mask=m2)

