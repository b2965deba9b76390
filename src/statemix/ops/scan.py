"""Chunked parallel scan in pure PyTorch, for any first-order affine recurrence.

`h_t = A_t h_{t-1} + b_t` with the associative operator `(A_l, b_l) • (A_r, b_r) = (A_r A_l,
A_r b_l + b_r)`, evaluated in two levels. Time is cut into C chunks of L ≈ √T steps. First,
every chunk is reduced at once: the operator folds its L elements into prefix pairs
`(P_t, x_t)`, all chunks in parallel. Then the state is relayed across the C chunk totals, and
finally `h_t = P_t h_start + x_t` for every step at once. That is L + C dependent steps instead
of T, with O(T·M³) work. Chunks go in groups whose size is capped, so the working memory stays
bounded however long T is. H-LRU enters through its companion matrices, BD-LRU through its blocks.
"""
import math

import torch
import torch.nn.functional as F

from .naive import compute_dtype
from .norm import normalize

MAX_GROUP_ELEMENTS = 1 << 24


def _fold_chunks(A, b):
    """Prefix pairs inside each chunk. A `[B, C, L, N, M, M]`, b `[B, C, L, N, M]` -> (P, x) of the same shapes."""
    A = A.movedim(2, 0).contiguous()  # [L, B, C, N, M, M]: each step's slice is contiguous
    b = b.movedim(2, 0).contiguous()
    P, x = A[0], b[0]
    Ps, xs = [P], [x]
    for A_i, b_i in zip(A[1:], b[1:]):
        P = A_i @ P
        x = (A_i @ x.unsqueeze(-1)).squeeze(-1) + b_i
        Ps.append(P)
        xs.append(x)
    return torch.stack(Ps, dim=2), torch.stack(xs, dim=2)


def affine_scan(A, b, initial_state=None, chunk=None):
    """Scan `h_t = A_t h_{t-1} + b_t`.

    Args:
        A: `[B, T, N, M, M]`; b: `[B, T, N, M]`; initial_state: `[B, N, M]` or None.
        chunk: steps per chunk; None picks ⌈√T⌉.
    Returns:
        h `[B, T, N, M]` and the final state `[B, N, M]`.
    """
    B, T, N, M = b.shape
    h = b.new_zeros(B, N, M) if initial_state is None else initial_state.to(b.dtype)
    if T == 0:
        return b, h
    L = chunk or math.isqrt(T - 1) + 1
    C = -(-T // L)
    pad = C * L - T
    if pad:
        eye = torch.eye(M, dtype=A.dtype, device=A.device).expand(B, pad, N, M, M)
        A = torch.cat([A, eye], dim=1)
        b = torch.cat([b, b.new_zeros(B, pad, N, M)], dim=1)
    A = A.reshape(B, C, L, N, M, M)
    b = b.reshape(B, C, L, N, M)
    group = max(1, MAX_GROUP_ELEMENTS // (B * L * N * M * M))
    outs = []
    for g in range(0, C, group):
        P, x = _fold_chunks(A[:, g:g + group], b[:, g:g + group])
        starts = []
        for P_c, x_c in zip(P[:, :, -1].unbind(1), x[:, :, -1].unbind(1)):
            starts.append(h)
            h = (P_c @ h.unsqueeze(-1)).squeeze(-1) + x_c
        h0 = torch.stack(starts, dim=1)  # [B, G, N, M]
        outs.append((P @ h0[:, :, None, :, :, None]).squeeze(-1) + x)
    hs = torch.cat(outs, dim=1).reshape(B, C * L, N, M)[:, :T]
    return hs, h


def companion(a):
    """Companion matrices `[..., M, M]` from lag coefficients `a` `[..., M]` (first row a, ones below the diagonal)."""
    M = a.shape[-1]
    shift = torch.eye(M, dtype=a.dtype, device=a.device)[:-1]  # [M-1, M]
    return torch.cat([a.unsqueeze(-2), shift.expand(*a.shape[:-1], M - 1, M)], dim=-2)


def hlru_scan(logits, v, norm="softmax", initial_state=None):
    """H-LRU by parallel scan over companion matrices; same contract as `hlru_ref`."""
    cd = compute_dtype(v.dtype)
    a = normalize(logits.to(cd), norm)
    M = a.shape[-1] - 1
    b = F.pad((a[..., -1] * v.to(cd)).unsqueeze(-1), (0, M - 1))
    h0 = None if initial_state is None else initial_state.to(cd)
    hs, hT = affine_scan(companion(a[..., :-1]), b, h0)
    return hs[..., 0].to(v.dtype), hT


def bdlru_scan(logits, v, norm="softmax", initial_state=None):
    """BD-LRU by parallel scan over its dense blocks; same contract as `bdlru_ref`."""
    cd = compute_dtype(v.dtype)
    a = normalize(logits.to(cd), norm)
    h0 = None if initial_state is None else initial_state.to(cd)
    hs, hT = affine_scan(a[..., :-1], a[..., -1] * v.to(cd), h0)
    return hs.to(v.dtype), hT
