"""Time chunking shared by H-LRU and BD-LRU: the launchers and the carry relays.

Each chunk c is summarised by its end state from zero `e[c]` and its transition
`phi[c]`, so that `state_end(c) = phi[c] state_end(c-1) + e[c]`; the backward uses
the transposed relation for the adjoint. One program walks all chunks of BR chains.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def relay_fwd_kernel(e_ptr, phi_ptr, hin_ptr, R, M, NC, MP: tl.constexpr, BR: tl.constexpr):
    """`hin[c+1] = phi[c] hin[c] + e[c]`, walking the chunks in order (shared by both ops)."""
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    p = tl.arange(0, MP)
    m = (r < R)[:, None] & (p[None, :] < M)
    h = tl.load(hin_ptr + (r * MP)[:, None] + p[None, :], mask=m, other=0.0)
    q2 = p[:, None] * MP + p[None, :]
    for c in range(0, NC - 1):
        rc = c * R + r
        phi_off = (rc.to(tl.int64) * MP * MP)[:, None, None] + q2[None, :, :]
        phi = tl.load(phi_ptr + phi_off, mask=m[:, :, None] & (p < M)[None, None, :], other=0.0)
        e = tl.load(e_ptr + (rc.to(tl.int64) * MP)[:, None] + p[None, :], mask=m, other=0.0)
        h = tl.sum(phi * h[:, None, :], axis=2) + e
        tl.store(hin_ptr + ((rc + R).to(tl.int64) * MP)[:, None] + p[None, :], h, mask=m)


@triton.jit
def relay_bwd_kernel(f_ptr, phi_ptr, mu_ptr, R, M, NC, MP: tl.constexpr, BR: tl.constexpr):
    """`mu[c-1] = phi[c]ᵀ mu[c] + f[c]`, walking the chunks backwards (shared by both ops)."""
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    p = tl.arange(0, MP)
    m = (r < R)[:, None] & (p[None, :] < M)
    mu = tl.load(mu_ptr + ((NC - 1) * R + r).to(tl.int64)[:, None] * MP + p[None, :], mask=m, other=0.0)
    q2 = p[:, None] * MP + p[None, :]
    for i in range(0, NC - 1):
        c = NC - 1 - i
        rc = c * R + r
        phi_off = (rc.to(tl.int64) * MP * MP)[:, None, None] + q2[None, :, :]
        phi = tl.load(phi_ptr + phi_off, mask=m[:, :, None] & (p < M)[None, None, :], other=0.0)
        f = tl.load(f_ptr + (rc.to(tl.int64) * MP)[:, None] + p[None, :], mask=m, other=0.0)
        mu = tl.sum(phi * mu[:, :, None], axis=1) + f
        tl.store(mu_ptr + ((rc - R).to(tl.int64) * MP)[:, None] + p[None, :], mu, mask=m)


def relay_fwd(e, phi, hin, M):
    """Fill `hin[1:]` in place. e, hin `[NC, R, MP]`; phi `[NC, R, MP, MP]`; M valid lanes."""
    NC, R, MP = hin.shape
    if NC > 1:
        BR = 64
        relay_fwd_kernel[(triton.cdiv(R, BR),)](e, phi, hin, R, M, NC, MP=MP, BR=BR)


def relay_bwd(f, phi, mu, M):
    """Fill `mu[:-1]` in place. f, mu `[NC, R, MP]`; phi `[NC, R, MP, MP]`; M valid lanes."""
    NC, R, MP = mu.shape
    if NC > 1:
        BR = 64
        relay_bwd_kernel[(triton.cdiv(R, BR),)](f, phi, mu, R, M, NC, MP=MP, BR=BR)




def scan_fwd(kernel, logits, v, hin0, M, norm_id, L, cfg):
    """Run a forward scan kernel over chunks of L steps: summaries, relay, then the scan.

    hin0 `[B, N, MP]` is the initial state in the kernel's coordinates. Returns the
    output (shaped like v), the end state `[B, N, MP]` and the chunk transitions
    `[NC, B·N, MP, MP]` (None with one chunk), which the backward relay reuses.
    """
    B, T, N = logits.shape[:3]
    MP = hin0.shape[-1]
    NC = triton.cdiv(T, L)
    R = B * N
    out = torch.empty_like(v)
    hin = hin0.new_empty(NC, R, MP)
    hin[0] = hin0.reshape(R, MP)
    fin = hin0.new_empty(B, N, MP)
    phi = None
    meta = dict(MP=MP, NUM_STAGES=cfg.stages, num_warps=cfg.warps)
    if NC > 1:
        e = hin0.new_empty(NC, R, MP)
        phi = hin0.new_empty(NC, R, MP, MP)
        kernel[(triton.cdiv(N, cfg.block_summary), B, NC)](
            logits, v, out, hin, e, phi, fin, T, N, M, L, NC, norm_id, BN=cfg.block_summary, SUMMARY=True, **meta
        )
        relay_fwd(e, phi, hin, M)
    kernel[(triton.cdiv(N, cfg.block), B, NC)](
        logits, v, out, hin, hin, hin, fin, T, N, M, L, NC, norm_id, BN=cfg.block, SUMMARY=False, **meta
    )
    return out, fin, phi


def scan_bwd(kernel, logits, v, out, h0, dout, dfin, phi, M, norm_id, L, cfg):
    """Run a backward scan kernel over the forward's chunks, right to left.

    h0 and dfin `[B, N, MP]` are in the kernel's coordinates. Returns dlogits, dv and
    the adjoint of the initial state `[B, N, MP]`.
    """
    B, T, N = logits.shape[:3]
    MP = h0.shape[-1]
    NC = triton.cdiv(T, L)
    R = B * N
    dx = torch.empty_like(logits)
    dv = torch.empty_like(v)
    dh0 = torch.empty_like(h0)
    mu = h0.new_empty(NC, R, MP)
    mu[NC - 1] = dfin.reshape(R, MP)
    meta = dict(MP=MP, NUM_STAGES=cfg.stages, num_warps=cfg.warps)
    if NC > 1:
        f = h0.new_empty(NC, R, MP)
        kernel[(triton.cdiv(N, cfg.block_summary), B, NC)](
            logits, v, out, h0, dout, mu, f, dx, dv, dh0, T, N, M, L, norm_id,
            BN=cfg.block_summary, SUMMARY=True, **meta,
        )
        relay_bwd(f, phi, mu, M)
    kernel[(triton.cdiv(N, cfg.block), B, NC)](
        logits, v, out, h0, dout, mu, mu, dx, dv, dh0, T, N, M, L, norm_id, BN=cfg.block, SUMMARY=False, **meta
    )
    return dx, dv, dh0
