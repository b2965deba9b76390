"""Gate normalisations of paper.md §1.4: `f(g) / Σ|f(g)|` over the last dimension.

The last dimension holds the M+1 logits of one row, normalised jointly: the M
recurrent coefficients first, the input gate last. Every variant except `none`
gives Σ|a| ≤ 1, the condition of Proposition 1.
"""
import torch

NORMS = ("softmax", "sigmoid", "relu", "tanh", "linear", "none")

RELU_EPS = 0.001
TINY = 1e-12


def normalize(logits: torch.Tensor, norm: str = "softmax") -> torch.Tensor:
    """Normalise gate logits `[..., M+1]` jointly over the last dimension."""
    if norm == "softmax":
        return torch.softmax(logits, dim=-1)
    if norm == "relu":
        f = torch.relu(logits)
        return f / (f + RELU_EPS).sum(-1, keepdim=True)
    if norm == "none":
        return logits
    if norm == "sigmoid":
        f = torch.sigmoid(logits)
    elif norm == "tanh":
        f = torch.tanh(logits)
    elif norm == "linear":
        f = logits
    else:
        raise ValueError(f"norm: got {norm!r}; allowed: {', '.join(NORMS)}")
    return f / f.abs().sum(-1, keepdim=True).clamp_min(TINY)
