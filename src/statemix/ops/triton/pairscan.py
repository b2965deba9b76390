"""Pair scans for M > 1: each time tile's affine maps `(A_t, b_t)` composed by `tl.associative_scan`.

A program holds BN rows (H-LRU channels, BD-LRU blocks) of one batch element and walks T in
tiles of TT steps, carrying the M-vector state between tiles. Per tile it loads and normalises
all gates at once (every load of the tile is in flight together), scans the maps along time in
log depth, applies the prefix maps to the carry and writes the outputs. There is no time
chunking, so every byte is read once; the price is an M×M product per combine. H-LRU uses its
companion matrix. The backward scans `λ_t = A_{t+1}ᵀ λ_{t+1} + dh_t` over time-reversed tiles.
Kernel source is generated per (op, M) by `pairscan_gen`.
"""
import linecache
from dataclasses import dataclass

import torch
import triton

from .common import interpreting, pow2
from .pairscan_gen import kernel_source

_KERNELS = {}


def kernels(kind, M, joint=False):
    """`(fwd, bwd)` Triton kernels for `kind` at order/block size M (rows loaded jointly or split: see
    `pairscan_gen`), compiled from generated source once."""
    key = (kind, M, joint)
    if key not in _KERNELS:
        src = kernel_source(kind, M, joint)
        tag = f"{kind}_m{M}" + ("_joint" if joint else "")
        name = f"<statemix-pairscan-{tag}>"
        linecache.cache[name] = (len(src), None, src.splitlines(True), name)
        scope = {"__name__": f"statemix.ops.triton.pairscan_{tag}"}
        exec(compile(src, name, "exec"), scope)
        _KERNELS[key] = (scope["fwd"], scope["bwd"])
    return _KERNELS[key]


@dataclass(frozen=True)
class Tile:
    """Time steps TT × rows BN per program, and warps."""

    TT: int
    BN: int
    warps: int = 4


def lanes(M, joint=False):
    """Lanes of a row tile: pow2(M) for the gate entries alone, pow2(M+1) when the input gate joins them."""
    return pow2(M + 1) if joint else pow2(M)


def default_tile(kind, M, T, backward=False, joint=False):
    """Tiles holding about 1 to 8 elements of each of the M²+M operands per thread (register budget:
    BD-LRU M=4 ran at 168 registers forward and 201 backward on the H200, no spills). The backward,
    which also holds the adjoint's operands and the gradient tiles, gets half the elements, and joint
    rows get fewer in the ratio of their wider lane count."""
    if interpreting():
        return Tile(4, 2, 1)
    ops = M * M + M
    elems = (1024 if ops <= 6 else 512 if ops <= 20 else 256) // (2 if backward else 1)
    elems = elems * lanes(M) // lanes(M, joint)
    TT = min(pow2(T), 64 if ops > 6 else 128)
    return Tile(TT, max(1, elems // TT), 4)


class PairScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, v, h0, kind, norm_id, tile, tile_bwd, joint):
        B, T, N = logits.shape[:3]
        M = logits.shape[-1] - 1
        fwd, _ = kernels(kind, M, joint)
        h0f = logits.new_zeros(B, N, M, dtype=torch.float32) if h0 is None else h0.float().contiguous()
        out = torch.empty_like(v)
        fin = torch.empty(B, N, M, device=v.device, dtype=torch.float32)
        grid = (triton.cdiv(N, tile.BN), B)
        fwd[grid](logits, v, out, h0f, fin, T, N, NORM=norm_id, TT=tile.TT, BN=tile.BN, MP=lanes(M, joint),
                  num_warps=tile.warps)
        ctx.save_for_backward(logits, v, out, h0f)
        ctx.meta = (kind, norm_id, tile_bwd, joint, h0 is not None, None if h0 is None else h0.dtype)
        return out, fin

    @staticmethod
    def backward(ctx, dout, dfinal):
        logits, v, out, h0f = ctx.saved_tensors
        kind, norm_id, tile, joint, has_h0, h0_dtype = ctx.meta
        B, T, N = logits.shape[:3]
        M = logits.shape[-1] - 1
        _, bwd = kernels(kind, M, joint)
        dout = torch.zeros_like(out) if dout is None else dout.contiguous()
        dfin = torch.zeros_like(h0f) if dfinal is None else dfinal.float().contiguous()
        dx = torch.empty_like(logits)
        dv = torch.empty_like(v)
        dh0 = torch.empty_like(h0f)
        grid = (triton.cdiv(N, tile.BN), B)
        bwd[grid](logits, v, out, h0f, dout, dfin, dx, dv, dh0, T, N, NORM=norm_id, TT=tile.TT, BN=tile.BN,
                  MP=lanes(M, joint), num_warps=tile.warps)
        return dx, dv, (dh0.to(h0_dtype) if has_h0 else None), None, None, None, None, None


def pair_scan(kind, logits, v, norm_id, initial_state, tile=None, tile_bwd=None, joint=False):
    """Run the pair scan; logits/v contiguous `[B, T, N, …]`. Returns `(out, final_state fp32)`.

    `tile`, `tile_bwd` override the forward and backward tiles (the launch sweep uses them); `joint`
    loads and stores each row's logits in one instruction (`pairscan_gen`).
    """
    T = logits.shape[1]
    M = logits.shape[-1] - 1
    tile = tile or default_tile(kind, M, T, joint=joint)
    tile_bwd = tile_bwd or default_tile(kind, M, T, backward=True, joint=joint)
    return PairScanFunction.apply(logits, v, initial_state, kind, norm_id, tile, tile_bwd, joint)


PATHS = (None, "pair", "pair-joint", "chunked")
PAIR_MAX_OPERANDS = 30
PAIR_MAX_T = 512


def use_pair(kind, logits, chunk, config, path):
    """Dispatch by shape and dtype only (no host sync, so CUDA-graph safe): the pair scan for M > 1 when
    its M²+M operands fit the register budget (H-LRU M ≤ 5, BD-LRU M ≤ 5), T ≤ 512 (many short
    sequences, as in MAD training: B·N rows fill the GPU) and the input is not fp64; the chunked
    sequential kernels otherwise, or when `chunk`/`config` ask for them. At B=8, T=4096 the chunked
    kernels were as fast or faster (BD-LRU M=2: 1.57 vs 3.73 ms bf16 fwd+bwd; bench_scan.md). 'pair-joint'
    (rows loaded and stored whole) is taken only when asked, until the H200 benchmark has timed it."""
    if path not in PATHS:
        raise ValueError(f"path: got {path!r}; allowed: {', '.join(map(str, PATHS))}")
    M = logits.shape[-1] - 1
    if path in ("pair", "pair-joint"):
        if logits.dtype == torch.float64:
            raise ValueError(f"path: {path!r} computes in fp32; fp64 inputs need path='chunked' or None")
        return True
    if path == "chunked" or chunk is not None or config is not None:
        return False
    T = logits.shape[1]
    return logits.dtype != torch.float64 and 1 < M and M * M + M <= PAIR_MAX_OPERANDS and T <= PAIR_MAX_T
