"""Parallel associative scan in pure PyTorch, for any first-order affine recurrence.

`h_t = A_t h_{t-1} + b_t` is computed chunk by chunk: inside a chunk of L steps a
Hillis–Steele prefix scan with the operator `(A_l, b_l) • (A_r, b_r) = (A_r A_l,
A_r b_l + b_r)` runs in log2(L) parallel steps; the state is relayed between
chunks. Chunks are processed in groups whose size is capped, so the working
memory stays bounded however long T is. H-LRU enters through its companion
matrices, BD-LRU through its blocks.
"""
import torch
import torch.nn.functional as F

from .naive import compute_dtype
from .norm import normalize

CHUNK = 64
MAX_GROUP_ELEMENTS = 1 << 24


def _prefix(A, b):
    """Inclusive prefix composition along dim 2. A `[B, C, L, N, M, M]`, b `[B, C, L, N, M]`."""
    L = A.shape[2]
    d = 1
    while d < L:
        A_new = A[:, :, d:] @ A[:, :, :-d]
        b_new = (A[:, :, d:] @ b[:, :, :-d].unsqueeze(-1)).squeeze(-1) + b[:, :, d:]
        A = torch.cat([A[:, :, :d], A_new], dim=2)
        b = torch.cat([b[:, :, :d], b_new], dim=2)
        d *= 2
    return A, b


def affine_scan(A, b, initial_state=None, chunk=CHUNK):
    """Scan `h_t = A_t h_{t-1} + b_t`.

    Args:
        A: `[B, T, N, M, M]`; b: `[B, T, N, M]`; initial_state: `[B, N, M]` or None.
    Returns:
        h `[B, T, N, M]` and the final state `[B, N, M]`.
    """
    B, T, N, M = b.shape
    h = b.new_zeros(B, N, M) if initial_state is None else initial_state.to(b.dtype)
    if T == 0:
        return b, h
    L = min(chunk, T)
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
        Ag, bg = _prefix(A[:, g:g + group], b[:, g:g + group])
        starts = []
        for c in range(Ag.shape[1]):
            starts.append(h)
            h = (Ag[:, c, -1] @ h.unsqueeze(-1)).squeeze(-1) + bg[:, c, -1]
        h0 = torch.stack(starts, dim=1)  # [B, G, N, M]
        outs.append((Ag @ h0[:, :, None, :, :, None]).squeeze(-1) + bg)
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
