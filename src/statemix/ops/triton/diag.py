"""M = 1 (the diagonal LRU): single-pass block scans, forward and backward.

With a scalar state the affine pairs `(a_t, u_t)` compose cheaply, so a program loads
a `[BT, BN]` tile (time × channels), resolves it with `tl.associative_scan` along time
and carries the last state to the next tile: every byte is read once and many are in
flight. The backward loads its tiles time-reversed and scans them the same way.
"""
import torch
import triton
import triton.language as tl

from .common import norm_bwd, norm_fwd


@triton.jit
def _affine(a_l, u_l, a_r, u_r):
    return a_l * a_r, a_r * u_l + u_r


@triton.jit
def _coeffs(x_ptr, row, mask, NORM, cd: tl.constexpr):
    """Normalised `(a_1, a_0)` `[BT, BN, 1]` of rows `row` `[BT, BN]`, and the raw logits."""
    x = tl.load(x_ptr + 2 * row, mask=mask, other=0.0).to(cd)[:, :, None]
    g = tl.load(x_ptr + 2 * row + 1, mask=mask, other=0.0).to(cd)[:, :, None]
    a, a0 = norm_fwd(x, g, mask[:, :, None], NORM, 2)
    return a, a0, x, g


@triton.jit(do_not_specialize=["NORM", "T"])
def diag_fwd_kernel(x_ptr, v_ptr, h_ptr, h0_ptr, fin_ptr, T, N, NORM, BT: tl.constexpr, BN: tl.constexpr):
    """One program: BN channels of one batch element, all of T in tiles of BT steps."""
    b = tl.program_id(1)
    cd = h0_ptr.dtype.element_ty
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    mn = n < N
    tt = tl.arange(0, BT)
    carry = tl.load(h0_ptr + b * N + n, mask=mn, other=0.0)
    for t0 in range(0, T, BT):
        t = t0 + tt
        m = (t < T)[:, None] & mn[None, :]
        row = (b.to(tl.int64) * T + t)[:, None] * N + n[None, :]
        a, a0, _, _ = _coeffs(x_ptr, row, m, NORM, cd)
        v = tl.load(v_ptr + row, mask=m, other=0.0).to(cd)
        ca, cu = tl.associative_scan((tl.sum(a, axis=2), tl.sum(a0, axis=2) * v), 0, _affine)
        h = cu + ca * carry[None, :]
        tl.store(h_ptr + row, h.to(h_ptr.dtype.element_ty), mask=m)
        carry = tl.sum(tl.where((t == T - 1) | (tt == BT - 1), 1.0, 0.0)[:, None] * tl.where(m, h, 0.0), axis=0)
    tl.store(fin_ptr + b * N + n, carry, mask=mn)


@triton.jit(do_not_specialize=["NORM", "T"])
def diag_bwd_kernel(x_ptr, v_ptr, h_ptr, h0_ptr, dh_ptr, dfin_ptr, dx_ptr, dv_ptr, dh0_ptr, T, N, NORM,
                    BT: tl.constexpr, BN: tl.constexpr):
    """`λ_t = dh_t + a_{t+1} λ_{t+1}` over time-reversed tiles; writes dlogits, dv, dh0.

    The last step's `a_T λ_T` is the final-state gradient: it enters as the carry with
    coefficient 1.
    """
    b = tl.program_id(1)
    cd = h0_ptr.dtype.element_ty
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    mn = n < N
    tt = tl.arange(0, BT)
    carry = tl.load(dfin_ptr + b * N + n, mask=mn, other=0.0)
    dh0 = tl.zeros((BN,), cd)
    for j in range(0, T, BT):
        t = T - 1 - j - tt
        m = (t >= 0)[:, None] & mn[None, :]
        row = (b.to(tl.int64) * T + t)[:, None] * N + n[None, :]
        mnext = ((t + 1 < T) & (t >= 0))[:, None] & mn[None, :]
        an, _, _, _ = _coeffs(x_ptr, row + N, mnext, NORM, cd)
        dh = tl.load(dh_ptr + row, mask=m, other=0.0).to(cd)
        ca, cl = tl.associative_scan((tl.where(mnext, tl.sum(an, axis=2), 1.0), dh), 0, _affine)
        lam = cl + ca * carry[None, :]
        a, a0, x, g = _coeffs(x_ptr, row, m, NORM, cd)
        v = tl.load(v_ptr + row, mask=m, other=0.0).to(cd)
        hp = tl.load(h_ptr + row - N, mask=m & (t >= 1)[:, None], other=0.0).to(cd)
        hp += tl.load(h0_ptr + b * N + n[None, :] + 0 * row, mask=m & (t == 0)[:, None], other=0.0)
        dxl, dg = norm_bwd(x, g, a, a0, (lam * hp)[:, :, None], (lam * v)[:, :, None], m[:, :, None], NORM, 2)
        tl.store(dx_ptr + 2 * row, tl.sum(dxl, axis=2).to(dx_ptr.dtype.element_ty), mask=m)
        tl.store(dx_ptr + 2 * row + 1, tl.sum(dg, axis=2).to(dx_ptr.dtype.element_ty), mask=m)
        tl.store(dv_ptr + row, (lam * tl.sum(a0, axis=2)).to(dv_ptr.dtype.element_ty), mask=m)
        first = (t == 0)[:, None] & m
        dh0 += tl.sum(tl.where(first, lam * tl.sum(a, axis=2), 0.0), axis=0)
        carry = tl.sum(tl.where(((tt == BT - 1) | (t == 0))[:, None] & m, lam, 0.0), axis=0)
    tl.store(dh0_ptr + b * N + n, dh0, mask=mn)


def tiles(interpret):
    """(BT, BN, warps): small tiles for the interpreter, 128×32 on the GPU."""
    return (4, 2, 1) if interpret else (128, 32, 8)


def diag_fwd(logits, v, h0, norm_id, interpret):
    """logits `[B,T,N,2]` (coefficient, gate), v `[B,T,N]`, h0 `[B,N]` fp32 -> (h, final)."""
    B, T, N = v.shape
    BT, BN, warps = tiles(interpret)
    h = torch.empty_like(v)
    fin = torch.empty_like(h0)
    diag_fwd_kernel[(triton.cdiv(N, BN), B)](logits, v, h, h0, fin, T, N, norm_id, BT=BT, BN=BN, num_warps=warps)
    return h, fin


def diag_bwd(logits, v, h, h0, dh, dfin, norm_id, interpret):
    """Gradients of `diag_fwd` w.r.t. logits, v and h0, from dh and d final."""
    B, T, N = v.shape
    BT, BN, warps = tiles(interpret)
    dx, dv, dh0 = torch.empty_like(logits), torch.empty_like(v), torch.empty_like(h0)
    diag_bwd_kernel[(triton.cdiv(N, BN), B)](logits, v, h, h0, dh, dfin, dx, dv, dh0, T, N, norm_id,
                                             BT=BT, BN=BN, num_warps=warps)
    return dx, dv, dh0


class DiagFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, v, h0, norm_id, interpret):
        h, fin = diag_fwd(logits, v, h0, norm_id, interpret)
        ctx.save_for_backward(logits, v, h, h0)
        ctx.meta = (norm_id, interpret)
        return h, fin

    @staticmethod
    def backward(ctx, dh, dfin):
        logits, v, h, h0 = ctx.saved_tensors
        dh = torch.zeros_like(h) if dh is None else dh.contiguous()
        dfin = torch.zeros_like(h0) if dfin is None else dfin.contiguous()
        dx, dv, dh0 = diag_bwd(logits, v, h, h0, dh, dfin, *ctx.meta)
        return dx, dv, dh0, None, None


def diag_scan(logits, v, h0, norm_id, interpret):
    """Diagonal LRU. logits `[B,T,N,2]`, v `[B,T,N]`, h0 `[B,N]` in the compute dtype."""
    return DiagFunction.apply(logits, v, h0, norm_id, interpret)
