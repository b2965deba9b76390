"""Public H-LRU / BD-LRU ops: argument checks, then the chosen backend."""
import os

import torch

from .checks import check_args
from .naive import bdlru_ref, hlru_ref
from .scan import bdlru_scan, hlru_scan


def triton_usable(x: torch.Tensor) -> bool:
    """True when the Triton kernels can run on `x`: a CUDA tensor, or the CPU interpreter."""
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    try:
        import statemix.ops.triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """Map `auto` to the fastest correct backend for `x`'s device.

    CUDA: the fused Triton kernels, or the PyTorch scan where Triton is missing. CPU: the sequential
    loop, which beat the PyTorch scan at every measured shape, forward and backward, on a 2-core
    machine (reports/benchmarks/bench_cpu_backends.md).
    """
    if backend == "triton" and not triton_usable(x):
        raise ValueError(
            f"backend: 'triton' needs a CUDA tensor (or TRITON_INTERPRET=1) and triton; got a tensor on {x.device}"
        )
    if backend != "auto":
        return backend
    if x.is_cuda:
        return "triton" if triton_usable(x) else "scan"
    return "reference"


def _run(block, logits, v, norm, backend, initial_state, output_final_state):
    check_args(logits, v, norm, backend, initial_state, block)
    backend = resolve_backend(backend, logits)
    if backend == "triton":
        from statemix.ops.triton import bdlru_triton, hlru_triton
        out, final = (bdlru_triton if block else hlru_triton)(logits, v, norm, initial_state, output_final_state)
    else:
        fns = {"reference": (hlru_ref, bdlru_ref), "scan": (hlru_scan, bdlru_scan)}[backend]
        out, final = fns[block](logits, v, norm, initial_state)
    return (out, final) if output_final_state else out


def hlru(logits, v, norm="softmax", backend="auto", initial_state=None, output_final_state=False):
    """Higher-order LRU: `s_t = Σ_{k=1..M} a_{t,k} s_{t-k} + a_{t,0} v_t`, per channel.

    Args:
        logits: `[B, T, N, M+1]` gate logits, normalised jointly into `(a_1 … a_M, a_0)`.
        v: `[B, T, N]` values, same dtype as logits (fp32, bf16, fp16 or fp64).
        norm: one of softmax, sigmoid, relu, tanh, linear, none.
        backend: reference (sequential loop), scan (parallel, PyTorch), triton, or auto.
        initial_state: `[B, N, M]` = `(s_0, s_{-1}, …, s_{1-M})`, or None for zeros.
        output_final_state: also return the state `[B, N, M]` after the last step (fp32).
    Returns:
        s `[B, T, N]` in the input dtype, or `(s, final_state)`.

    Example::
        >>> s = hlru(torch.randn(2, 7, 3, 3), torch.randn(2, 7, 3))
    """
    return _run(False, logits, v, norm, backend, initial_state, output_final_state)


def bdlru(logits, v, norm="softmax", backend="auto", initial_state=None, output_final_state=False):
    """Block-diagonal LRU: `h_t = A_t h_{t-1} + a0_t ⊙ v_t`, one dense M×M block per n.

    Args:
        logits: `[B, T, N, M, M+1]`; row i normalises jointly into `(A_t[i, 0..M-1], a0_t[i])`.
        v: `[B, T, N, M]`, same dtype as logits.
        norm, backend, output_final_state: as in `hlru`.
        initial_state: `[B, N, M]` or None for zeros.
    Returns:
        h `[B, T, N, M]` in the input dtype, or `(h, final_state)`.

    Example::
        >>> h = bdlru(torch.randn(2, 7, 3, 2, 3), torch.randn(2, 7, 3, 2))
    """
    return _run(True, logits, v, norm, backend, initial_state, output_final_state)
