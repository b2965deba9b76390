"""Gate normalisation in registers (forward and adjoint), and launch heuristics.

Every kernel loads one row of raw logits as a tile `x [..., MP]` (the M recurrent
coefficients, padded to a power of two) plus the input-gate logit `g [..., 1]`, and
normalises them here, so the normalised coefficients never reach memory.
"""
import os
from dataclasses import dataclass

import triton
import triton.language as tl

from ..norm import NORMS, RELU_EPS, TINY

NORM_ID = {name: i for i, name in enumerate(NORMS)}


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _activation(x, NORM):
    """f(x) of the L1-normalised variants: sigmoid, relu, tanh, identity."""
    if NORM == 1:
        f = 1.0 / (1.0 + tl.exp(-x))
    elif NORM == 2:
        f = tl.maximum(x, 0.0)
    elif NORM == 3:
        f = 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)
    else:
        f = x
    return f


@triton.jit
def _activation_grad(x, f, NORM):
    if NORM == 1:
        d = f * (1.0 - f)
    elif NORM == 2:
        d = tl.where(x > 0.0, 1.0, 0.0)
    elif NORM == 3:
        d = 1.0 - f * f
    else:
        d = tl.full(x.shape, 1.0, x.dtype)
    return d


@triton.jit
def _denominator(f, f0, mask, NORM, AXIS: tl.constexpr):
    """`(raw, s)`: the L1 sum of the activations `f`, `f0` and the divisor used, shared by both passes.

    relu: `s = raw = Σ(f + 0.001)`; the others: `raw = Σ|f|`, `s = max(raw, 1e-12)`.
    """
    if NORM == 2:
        raw = tl.sum(tl.where(mask, f + 1e-3, 0.0), axis=AXIS, keep_dims=True) + f0 + 1e-3
        s = raw
    else:
        raw = tl.sum(tl.abs(f), axis=AXIS, keep_dims=True) + tl.abs(f0)
        s = tl.maximum(raw, 1e-12)
    return raw, s


@triton.jit
def norm_fwd(x, g, mask, NORM, AXIS: tl.constexpr):
    """Normalise `(x, g)` jointly over the last axis. x `[..., MP]`, g `[..., 1]`.

    Returns `(a, a0)`; masked lanes of `a` are zero.
    """
    if NORM == 0:
        mx = tl.maximum(tl.max(tl.where(mask, x, float("-inf")), axis=AXIS, keep_dims=True), g)
        f = tl.where(mask, tl.exp(x - mx), 0.0)
        f0 = tl.exp(g - mx)
        s = tl.sum(f, axis=AXIS, keep_dims=True) + f0
        a = f / s
        a0 = f0 / s
    elif NORM == 5:
        a = tl.where(mask, x, 0.0)
        a0 = g
    else:
        f = tl.where(mask, _activation(x, NORM), 0.0)
        f0 = _activation(g, NORM)
        _, s = _denominator(f, f0, mask, NORM, AXIS)
        a = f / s
        a0 = f0 / s
    return a, a0


@triton.jit
def norm_bwd(x, g, a, a0, da, da0, mask, NORM, AXIS: tl.constexpr):
    """Adjoint of `norm_fwd`: from `(da, da0)` to the logit gradients `(dx, dg)`."""
    if NORM == 0:
        dot = tl.sum(a * da, axis=AXIS, keep_dims=True) + a0 * da0
        dx = a * (da - dot)
        dg = a0 * (da0 - dot)
    elif NORM == 5:
        dx = da
        dg = da0
    else:
        f = tl.where(mask, _activation(x, NORM), 0.0)
        f0 = _activation(g, NORM)
        raw, s = _denominator(f, f0, mask, NORM, AXIS)
        if NORM == 2:
            q = (tl.sum(da * f, axis=AXIS, keep_dims=True) + da0 * f0) / (s * s)
            df = da / s - q
            df0 = da0 / s - q
        else:
            q = tl.where(raw >= 1e-12, (tl.sum(da * f, axis=AXIS, keep_dims=True) + da0 * f0) / (s * s), 0.0)
            df = da / s - q * tl.where(f > 0.0, 1.0, tl.where(f < 0.0, -1.0, 0.0))
            df0 = da0 / s - q * tl.where(f0 > 0.0, 1.0, tl.where(f0 < 0.0, -1.0, 0.0))
        dx = df * _activation_grad(x, f, NORM)
        dg = df0 * _activation_grad(g, f0, NORM)
    return tl.where(mask, dx, 0.0), dg


@triton.jit
def chunk_tile(T, N, M, L, MP: tl.constexpr, BN: tl.constexpr):
    """Indices of a program (BN rows of batch element b, chunk c): the rows `n`, lanes
    `p`, their masks, flat row ids `r` (b·N+n) and `rc` (into per-chunk buffers), and
    the chunk's time range [t0, t1)."""
    pid_n, b, c = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    n = pid_n * BN + tl.arange(0, BN)
    p = tl.arange(0, MP)
    mn = n < N
    mp = p < M
    r = b * N + n
    rc = c.to(tl.int64) * tl.num_programs(1) * N + r
    t0 = c * L
    return b, c, n, p, mn, mp, mn[:, None] & mp[None, :], r, rc, t0, tl.minimum(t0 + L, T)


assert RELU_EPS == 1e-3 and TINY == 1e-12, "norm constants are inlined in the kernels above"
assert NORMS == ("softmax", "sigmoid", "relu", "tanh", "linear", "none"), "kernels branch on these NORM_ID values"


def pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


@dataclass(frozen=True)
class Config:
    """Launch parameters: chains (H-LRU) or blocks (BD-LRU) per program, for the scan
    and for the chunk-summary pass (which also carries an MP×MP transition)."""

    block: int
    block_summary: int
    warps: int = 4
    stages: int = 3


def default_config(kind: str, MP: int) -> Config:
    if interpreting():
        return Config(4 if kind == "hlru" else 2, 2, 1, 1)
    if kind == "hlru":
        block = max(16, 256 // MP)
        return Config(block, max(8, min(block, 2048 // (MP * MP))))
    block = max(1, 128 // MP)
    return Config(block, max(1, min(block, 2048 // (MP * MP * MP))))


def chunk_len(T: int, programs: int, chunk: int | None, target_programs: int = 2048, min_len: int = 64,
              MP: int = 1) -> int:
    """Steps per time chunk: enough chunks that `programs * chunks` fills the GPU, except for large
    blocks (MP ≥ 16, or MP = 8 with T ≤ 512), where the chunk transitions' M×M products cost more than
    the parallelism gains: one chunk was faster there on the H200 at both benchmark shapes
    (reports/benchmarks/bench_scan.md, `triton-onechunk`); MP = 8 at T = 4096 in bf16 was not.

    `chunk` overrides the heuristic (tests use it to force several chunks).
    """
    if chunk is not None:
        if int(chunk) < 1:
            raise ValueError(f"chunk_len: got {chunk!r}; allowed: a positive int or None")
        return int(chunk)
    if interpreting() or MP >= 16 or (MP >= 8 and T <= 512):
        return max(T, 1)
    chunks = max(1, min(triton.cdiv(target_programs, max(programs, 1)), triton.cdiv(T, min_len)))
    return max(triton.cdiv(T, chunks), 1)
