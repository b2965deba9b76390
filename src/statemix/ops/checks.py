"""Argument checks of the public H-LRU / BD-LRU ops, shared by the dispatcher and the Triton wrappers."""
import torch

from .norm import NORMS

BACKENDS = ("auto", "reference", "scan", "triton")
DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def _names(items):
    return ", ".join(str(i) for i in items)


def check_args(logits, v, norm, backend, initial_state, block):
    """ValueError naming the first bad argument, its value and what is allowed."""
    if norm not in NORMS:
        raise ValueError(f"norm: got {norm!r}; allowed: {_names(NORMS)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: got {backend!r}; allowed: {_names(BACKENDS)}")
    for name, x in (("logits", logits), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in DTYPES:
            raise ValueError(f"{name}: dtype {x.dtype} is not supported; allowed: {_names(DTYPES)}")
    if v.dtype != logits.dtype:
        raise ValueError(f"v: dtype {v.dtype} differs from logits dtype {logits.dtype}; they must match")
    if v.device != logits.device:
        raise ValueError(f"v: on {v.device} but logits on {logits.device}; they must share a device")
    if block:
        want = "[B, T, N, M, M+1]"
        ok = logits.dim() == 5 and logits.shape[-1] == logits.shape[-2] + 1 and logits.shape[-2] >= 1
    else:
        want = "[B, T, N, M+1] with M >= 1"
        ok = logits.dim() == 4 and logits.shape[-1] >= 2
    if not ok:
        raise ValueError(f"logits: shape {tuple(logits.shape)} is not {want}")
    B, T, N = logits.shape[:3]
    M = logits.shape[-1] - 1
    v_shape = (B, T, N, M) if block else (B, T, N)
    if tuple(v.shape) != v_shape:
        raise ValueError(f"v: shape {tuple(v.shape)} does not match logits {tuple(logits.shape)}; expected {v_shape}")
    if initial_state is not None:
        if not isinstance(initial_state, torch.Tensor) or not initial_state.is_floating_point():
            raise ValueError("initial_state: expected a floating-point torch.Tensor or None")
        if tuple(initial_state.shape) != (B, N, M):
            raise ValueError(f"initial_state: shape {tuple(initial_state.shape)}; expected {(B, N, M)}")
        if initial_state.device != logits.device:
            raise ValueError(f"initial_state: on {initial_state.device} but logits on {logits.device}")
