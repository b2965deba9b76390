"""Exact sequential recurrences: the specification every fast backend is tested against.

Glossary: B batch, T time, N channels (H-LRU) or blocks (BD-LRU), M order or block size.
Arithmetic and state are fp32 (fp64 when the inputs are fp64); outputs come back in
the input dtype, final states in the compute dtype.
"""
import torch

from .norm import normalize


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def hlru_ref(logits, v, norm="softmax", initial_state=None):
    """H-LRU, order M: `s_t = Σ_k a_{t,k} s_{t-k} + a_{t,0} v_t`.

    Args:
        logits: `[B, T, N, M+1]`, normalised jointly into `(a_1 … a_M, a_0)`.
        v: `[B, T, N]`.
        initial_state: `[B, N, M]` holding `(s_0, s_{-1}, …, s_{1-M})`, or None for zeros.
    Returns:
        s `[B, T, N]` and the final state `[B, N, M]` = `(s_T, …, s_{T-M+1})`.
    """
    B, T, N, M1 = logits.shape
    cd = compute_dtype(v.dtype)
    a = normalize(logits.to(cd), norm)
    vv = v.to(cd)
    h = logits.new_zeros(B, N, M1 - 1, dtype=cd) if initial_state is None else initial_state.to(cd)
    out = []
    for a_t, v_t in zip(a.unbind(1), vv.unbind(1)):
        s = (a_t[..., :-1] * h).sum(-1) + a_t[..., -1] * v_t
        h = torch.cat([s.unsqueeze(-1), h[..., :-1]], dim=-1)
        out.append(s)
    s = torch.stack(out, dim=1) if out else vv.new_zeros(B, 0, N)
    return s.to(v.dtype), h


def bdlru_ref(logits, v, norm="softmax", initial_state=None):
    """BD-LRU, block size M: `h_t = A_t h_{t-1} + a0_t ⊙ v_t` per block.

    Args:
        logits: `[B, T, N, M, M+1]`; row i normalises jointly into `(A[i, :], a0[i])`.
        v: `[B, T, N, M]`.
        initial_state: `[B, N, M]` or None for zeros.
    Returns:
        h `[B, T, N, M]` and the final state `[B, N, M]`.
    """
    B, T, N, M, _ = logits.shape
    cd = compute_dtype(v.dtype)
    a = normalize(logits.to(cd), norm)
    A, a0 = a[..., :-1], a[..., -1]
    b = a0 * v.to(cd)
    h = logits.new_zeros(B, N, M, dtype=cd) if initial_state is None else initial_state.to(cd)
    out = []
    for A_t, b_t in zip(A.unbind(1), b.unbind(1)):
        h = torch.einsum("bnij,bnj->bni", A_t, h) + b_t
        out.append(h)
    hs = torch.stack(out, dim=1) if out else b
    return hs.to(v.dtype), h
