"""Argument checks and the small index maps shared by the H-LRU and BD-LRU wrappers."""
import torch

from ..checks import check_args
from ..naive import compute_dtype
from .common import interpreting

__all__ = ["check_inputs", "compute_dtype", "empty_result", "slot_perm"]


def check_inputs(logits, v, norm, initial_state, block):
    """The public ops' checks, plus the device: CUDA, or CPU under TRITON_INTERPRET=1."""
    check_args(logits, v, norm, "triton", initial_state, block)
    if not (logits.is_cuda or interpreting()):
        raise ValueError(
            f"logits: on {logits.device}; the triton backend needs a CUDA tensor (or TRITON_INTERPRET=1 on CPU)"
        )


def slot_perm(t_ref: int, M: int, device) -> torch.Tensor:
    """Index map between canonical lag order and circular slots at time `t_ref`.

    Canonical entry j holds `s_{t_ref-j}`, which lives in slot `(t_ref-j) mod M`; the
    map is its own inverse, so it converts in both directions. Built on the device (no host copy), so the
    op can be captured in a CUDA graph.
    """
    return torch.remainder(t_ref - torch.arange(M, device=device), M)


def empty_result(v, initial_state, state_shape, output_final_state):
    """The T = 0 case: no output steps; the final state is the initial one."""
    if not output_final_state:
        return v.clone(), None
    final = v.new_zeros(state_shape, dtype=compute_dtype(v.dtype))
    if initial_state is not None:
        final = final + initial_state.to(final.dtype)
    return v.clone(), final
