"""M = 1 (the diagonal LRU): single-pass block scans, forward and backward.

With a scalar state the affine pairs `(a_t, u_t)` compose cheaply, so a program loads
a `[BT, BN]` tile (time × channels), resolves it with `tl.associative_scan` along time
and carries the last state to the next tile: every byte is read once and many are in
flight. The backward walks the tiles from the last, loads each in ascending time and
scans it with `reverse=True`.

The kernels take every tensor's strides, so they read either layout in place:
channel-major `[B, T, N]` (what `.contiguous()` gives) or time-major, where T is the
unit-stride axis (a `[B, N, T]` buffer seen through `permute`; `time_major` below makes
one). Time-major tiles are long runs of one channel, so each thread scans contiguous
steps in registers, as accelerated-scan does; that layout is the fast one.
"""
import torch
import triton
import triton.language as tl

from .common import norm_bwd, norm_fwd


@triton.jit
def _affine(a_l, u_l, a_r, u_r):
    return a_l * a_r, a_r * u_l + u_r


@triton.jit
def _coeffs(x_ptr, off, sxk, mask, NORM, cd: tl.constexpr):
    """Normalised `(a_1, a_0)` `[BT, BN, 1]` at element offsets `off` `[BT, BN]`, and the raw logits."""
    x = tl.load(x_ptr + off, mask=mask, other=0.0).to(cd)[:, :, None]
    g = tl.load(x_ptr + off + sxk, mask=mask, other=0.0).to(cd)[:, :, None]
    a, a0 = norm_fwd(x, g, mask[:, :, None], NORM, 2)
    return a, a0, x, g


@triton.jit
def _fwd_tile(x_ptr, v_ptr, h_ptr, xb, vb, t0, n, mn, carry, T, sxt, sxn, sxk, svt, svn, NORM: tl.constexpr,
              cd: tl.constexpr, BT: tl.constexpr, MASKED: tl.constexpr):
    """Steps [t0, t0+BT) of one tile from the incoming state `carry`; returns the outgoing state.

    Unmasked tiles (all steps < T) keep the time axis free of masks, so loads vectorise.
    """
    tt = tl.arange(0, BT)
    t = t0 + tt
    if MASKED:
        m = (t < T)[:, None] & mn[None, :]
        last = ((t == T - 1) | (tt == BT - 1))[:, None] & m
    else:
        m = mn[None, :]
        last = (tt == BT - 1)[:, None] & m
    xo = xb + t[:, None] * sxt + n[None, :] * sxn
    vo = vb + t[:, None] * svt + n[None, :] * svn
    a, a0, _, _ = _coeffs(x_ptr, xo, sxk, m, NORM, cd)
    v = tl.load(v_ptr + vo, mask=m, other=0.0).to(cd)
    ca, cu = tl.associative_scan((tl.sum(a, axis=2), tl.sum(a0, axis=2) * v), 0, _affine)
    h = cu + ca * carry[None, :]
    tl.store(h_ptr + vo, h.to(h_ptr.dtype.element_ty), mask=m)
    return tl.sum(tl.where(last, h, 0.0), axis=0)


@triton.jit(do_not_specialize=["T"])
def diag_fwd_kernel(x_ptr, v_ptr, h_ptr, h0_ptr, fin_ptr, T, N, sxb, sxt, sxn, sxk, svb, svt, svn,
                    NORM: tl.constexpr, BT: tl.constexpr, BN: tl.constexpr):
    """One program: BN channels of one batch element, all of T in tiles of BT steps.

    x strides `(sxb, sxt, sxn, sxk)`; v and h share the strides `(svb, svt, svn)`.
    """
    b = tl.program_id(1)
    cd = h0_ptr.dtype.element_ty
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    mn = n < N
    carry = tl.load(h0_ptr + b * N + n, mask=mn, other=0.0)
    xb, vb = b.to(tl.int64) * sxb, b.to(tl.int64) * svb
    for t0 in range(0, T, BT):
        if t0 + BT <= T:
            carry = _fwd_tile(x_ptr, v_ptr, h_ptr, xb, vb, t0, n, mn, carry, T, sxt, sxn, sxk, svt, svn,
                              NORM, cd, BT, False)
        else:
            carry = _fwd_tile(x_ptr, v_ptr, h_ptr, xb, vb, t0, n, mn, carry, T, sxt, sxn, sxk, svt, svn,
                              NORM, cd, BT, True)
    tl.store(fin_ptr + b * N + n, carry, mask=mn)


@triton.jit
def _bwd_tile(x_ptr, v_ptr, h_ptr, h0_ptr, dh_ptr, dx_ptr, dv_ptr, xb, vb, h0_off, t0, n, mn, carry, dh0, T,
              sxt, sxn, sxk, svt, svn, NORM: tl.constexpr, cd: tl.constexpr, BT: tl.constexpr,
              MASKED: tl.constexpr):
    """Steps [t0, t0+BT) of the adjoint, scanned right to left from `carry` (= `a_{t0+BT} λ_{t0+BT}`
    folded in, see below); returns the outgoing carry and the updated dh0.

    Masked tiles are the one holding T-1 (no step after it) and the one holding 0 (its
    previous state is h0); the rest load whole aligned runs.
    """
    tt = tl.arange(0, BT)
    t = t0 + tt
    if MASKED:
        m = (t < T)[:, None] & mn[None, :]
        mnext = (t + 1 < T)[:, None] & mn[None, :]
        mprev = (t >= 1)[:, None] & m
    else:
        m = mn[None, :]
        mnext = m
        mprev = m
    xo = xb + t[:, None] * sxt + n[None, :] * sxn
    vo = vb + t[:, None] * svt + n[None, :] * svn
    an, _, _, _ = _coeffs(x_ptr, xo + sxt, sxk, mnext, NORM, cd)
    dh = tl.load(dh_ptr + vo, mask=m, other=0.0).to(cd)
    ca, cl = tl.associative_scan((tl.where(mnext, tl.sum(an, axis=2), 1.0), dh), 0, _affine, reverse=True)
    lam = cl + ca * carry[None, :]
    a, a0, x, g = _coeffs(x_ptr, xo, sxk, m, NORM, cd)
    v = tl.load(v_ptr + vo, mask=m, other=0.0).to(cd)
    hp = tl.load(h_ptr + vo - svt, mask=mprev, other=0.0).to(cd)
    if MASKED:
        hp += tl.load(h0_ptr + h0_off[None, :] + 0 * t[:, None], mask=m & (t == 0)[:, None], other=0.0)
        dh0 += tl.sum(tl.where((t == 0)[:, None] & m, lam * tl.sum(a, axis=2), 0.0), axis=0)
    dxl, dg = norm_bwd(x, g, a, a0, (lam * hp)[:, :, None], (lam * v)[:, :, None], m[:, :, None], NORM, 2)
    tl.store(dx_ptr + xo, tl.sum(dxl, axis=2).to(dx_ptr.dtype.element_ty), mask=m)
    tl.store(dx_ptr + xo + sxk, tl.sum(dg, axis=2).to(dx_ptr.dtype.element_ty), mask=m)
    tl.store(dv_ptr + vo, (lam * tl.sum(a0, axis=2)).to(dv_ptr.dtype.element_ty), mask=m)
    return tl.sum(tl.where((tt == 0)[:, None] & m, lam, 0.0), axis=0), dh0


@triton.jit(do_not_specialize=["T"])
def diag_bwd_kernel(x_ptr, v_ptr, h_ptr, h0_ptr, dh_ptr, dfin_ptr, dx_ptr, dv_ptr, dh0_ptr, T, N,
                    sxb, sxt, sxn, sxk, svb, svt, svn, NORM: tl.constexpr, BT: tl.constexpr, BN: tl.constexpr):
    """`λ_t = dh_t + a_{t+1} λ_{t+1}`, tile by tile from the last; writes dlogits, dv, dh0.

    Tiles are loaded in ascending time and scanned with `reverse=True`. dx has x's
    strides; v, h, dh and dv share v's. The last step's `a_T λ_T` is the final-state
    gradient: it enters as the carry with coefficient 1, and each tile hands on its
    first `λ`, which the next tile (earlier in time) multiplies by its `a_{t+1}`.
    """
    b = tl.program_id(1)
    cd = h0_ptr.dtype.element_ty
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    mn = n < N
    h0_off = b * N + n
    carry = tl.load(dfin_ptr + h0_off, mask=mn, other=0.0)
    dh0 = tl.zeros((BN,), cd)
    xb, vb = b.to(tl.int64) * sxb, b.to(tl.int64) * svb
    n_tiles = tl.cdiv(T, BT)
    for i in range(0, n_tiles):
        t0 = (n_tiles - 1 - i) * BT
        if (i == 0) | (t0 == 0):
            carry, dh0 = _bwd_tile(x_ptr, v_ptr, h_ptr, h0_ptr, dh_ptr, dx_ptr, dv_ptr, xb, vb, h0_off, t0, n, mn,
                                   carry, dh0, T, sxt, sxn, sxk, svt, svn, NORM, cd, BT, True)
        else:
            carry, dh0 = _bwd_tile(x_ptr, v_ptr, h_ptr, h0_ptr, dh_ptr, dx_ptr, dv_ptr, xb, vb, h0_off, t0, n, mn,
                                   carry, dh0, T, sxt, sxn, sxk, svt, svn, NORM, cd, BT, False)
    tl.store(dh0_ptr + h0_off, dh0, mask=mn)


def is_time_major(x: torch.Tensor) -> bool:
    """True when T (dim 1) is the unit-stride axis and the other strides are those of a dense `[B, N, …, T]`."""
    if x.dim() < 2 or x.stride(1) != 1:
        return False
    perm = (0, *range(2, x.dim()), 1)
    return x.permute(*perm).is_contiguous()


def time_major(x: torch.Tensor) -> torch.Tensor:
    """The same values with T as the unit-stride axis: `[B, T, …]` viewed over a `[B, …, T]` buffer."""
    perm = (0, *range(2, x.dim()), 1)
    inv = (0, x.dim() - 1, *range(1, x.dim() - 1))
    return x.permute(*perm).contiguous().permute(*inv)


def layout(logits, v):
    """Both operands time-major, kept in place; otherwise both channel-major (contiguous)."""
    if is_time_major(logits) and is_time_major(v):
        return logits, v, True
    return logits.contiguous(), v.contiguous(), False


def tiles(interpret, time_major_):
    """(BT, BN, warps): small tiles for the interpreter; long runs of one channel when time-major,
    128 steps × 32 channels otherwise."""
    if interpret:
        return (4, 2, 1)
    return (256, 1, 2) if time_major_ else (128, 32, 8)


def like(t, ref):
    """An empty tensor with `t`'s shape and dtype and `ref`'s strides."""
    return torch.empty_strided(t.shape, ref.stride(), dtype=t.dtype, device=t.device)


def diag_fwd(logits, v, h0, norm_id, interpret, tm, tile=None):
    """logits `[B,T,N,2]` (coefficient, gate), v `[B,T,N]`, h0 `[B,N]` fp32 -> (h, final); h has v's strides."""
    B, T, N = v.shape
    BT, BN, warps = tile or tiles(interpret, tm)
    h = like(v, v)
    fin = torch.empty_like(h0)
    diag_fwd_kernel[(triton.cdiv(N, BN), B)](logits, v, h, h0, fin, T, N, *logits.stride(), *v.stride(), norm_id,
                                             BT=BT, BN=BN, num_warps=warps)
    return h, fin


def diag_bwd(logits, v, h, h0, dh, dfin, norm_id, interpret, tm, tile=None):
    """Gradients of `diag_fwd` w.r.t. logits, v and h0, from dh and d final."""
    B, T, N = v.shape
    BT, BN, warps = tile or tiles(interpret, tm)
    if dh.stride() != v.stride():
        dh = like(dh, v).copy_(dh)
    dx, dv, dh0 = like(logits, logits), like(v, v), torch.empty_like(h0)
    diag_bwd_kernel[(triton.cdiv(N, BN), B)](logits, v, h, h0, dh, dfin, dx, dv, dh0, T, N,
                                             *logits.stride(), *v.stride(), norm_id,
                                             BT=BT, BN=BN, num_warps=warps)
    return dx, dv, dh0


class DiagFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, v, h0, norm_id, interpret, tm, tile):
        h, fin = diag_fwd(logits, v, h0, norm_id, interpret, tm, tile)
        ctx.save_for_backward(logits, v, h, h0)
        ctx.meta = (norm_id, interpret, tm, tile)
        return h, fin

    @staticmethod
    def backward(ctx, dh, dfin):
        logits, v, h, h0 = ctx.saved_tensors
        dh = torch.zeros_like(h) if dh is None else dh
        dfin = torch.zeros_like(h0) if dfin is None else dfin.contiguous()
        dx, dv, dh0 = diag_bwd(logits, v, h, h0, dh, dfin, *ctx.meta)
        return dx, dv, dh0, None, None, None, None


def diag_scan(logits, v, h0, norm_id, interpret, tile=None):
    """Diagonal LRU. logits `[B,T,N,2]`, v `[B,T,N]` (both time-major, or else made contiguous),
    h0 `[B,N]` in the compute dtype. `tile` = (BT, BN, warps) overrides the launch shape."""
    logits, v, tm = layout(logits, v)
    return DiagFunction.apply(logits, v, h0, norm_id, interpret, tm, tile)
