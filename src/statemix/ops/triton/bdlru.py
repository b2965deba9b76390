"""`bdlru_triton`: the fused BD-LRU scan with its Triton backward, as an autograd op."""
import torch

from .bdlru_bwd import bdlru_bwd_kernel
from .bdlru_fwd import bdlru_fwd_kernel
from .chunks import scan_bwd, scan_fwd
from .common import NORM_ID, chunk_len, default_config, interpreting, pow2
from .diag import diag_scan
from .pairscan import pair_scan, use_pair
from .prep import check_inputs, compute_dtype, empty_result


class BDLRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, v, h0, norm, L, cfg):
        B, T, N, M, _ = logits.shape
        cd = compute_dtype(logits.dtype)
        hin0 = logits.new_zeros(B, N, pow2(M), dtype=cd)
        if h0 is not None:
            hin0[..., :M] = h0.to(cd)
        h, fin, phi = scan_fwd(bdlru_fwd_kernel, logits, v, hin0, M, NORM_ID[norm], L, cfg)
        ctx.save_for_backward(logits, v, h, hin0, phi)
        ctx.meta = (norm, L, cfg, h0 is not None, None if h0 is None else h0.dtype)
        return h, fin[..., :M]

    @staticmethod
    def backward(ctx, dh, dfinal):
        logits, v, h, hin0, phi = ctx.saved_tensors
        norm, L, cfg, has_h0, h0_dtype = ctx.meta
        M = logits.shape[3]
        dh = torch.zeros_like(h) if dh is None else dh.contiguous()
        dfin = torch.zeros_like(hin0)
        if dfinal is not None:
            dfin[..., :M] = dfinal
        dx, dv, dh0 = scan_bwd(bdlru_bwd_kernel, logits, v, h, hin0, dh, dfin, phi, M, NORM_ID[norm], L, cfg)
        return dx, dv, (dh0[..., :M].to(h0_dtype) if has_h0 else None), None, None, None


def bdlru_triton(logits, v, norm="softmax", initial_state=None, output_final_state=False, *, chunk=None, config=None,
                 path=None):
    """BD-LRU `h_t = A_t h_{t-1} + a0_t ⊙ v_t` per M×M block, gates normalised in-kernel.

    Args:
        logits: `[B, T, N, M, M+1]`; row i holds `(A[i, :], a0[i])`, fp32/bf16/fp16/fp64.
        v: `[B, T, N, M]`, same dtype. At M = 1, time-major operands are read in place (as `hlru_triton`).
        initial_state: `[B, N, M]` or None.
        chunk: steps per time chunk (None: chosen to fill the GPU).
        config: a `common.Config` overriding the launch heuristics.
        path: 'pair' (pair scan, `pairscan.py`), 'pair-joint' (the same with each row's logits loaded and
            stored in one instruction) or 'chunked' (sequential chunks); None picks by shape
            (`pairscan.use_pair`). `chunk` or `config` implies 'chunked'.
    Returns:
        `(h [B, T, N, M], final_state [B, N, M] in fp32, or None)`.
    """
    check_inputs(logits, v, norm, initial_state, block=True)
    B, T, N, M, _ = logits.shape
    if T == 0:
        return empty_result(v, initial_state, (B, N, M), output_final_state)
    if M == 1 and chunk is None and config is None:
        cd = compute_dtype(logits.dtype)
        h0 = logits.new_zeros(B, N, dtype=cd) if initial_state is None else initial_state[..., 0].to(cd)
        h, final = diag_scan(logits.squeeze(3), v.squeeze(3), h0, NORM_ID[norm], interpreting())
        return h.unsqueeze(3), (final[..., None] if output_final_state else None)
    logits, v = logits.contiguous(), v.contiguous()
    if use_pair("bdlru", logits, chunk, config, path):
        out, final = pair_scan("bdlru", logits, v, NORM_ID[norm], initial_state, joint=path == "pair-joint")
        return out, (final if output_final_state else None)
    cfg = config or default_config("bdlru", pow2(M))
    L = chunk_len(T, B * -(-N // cfg.block), chunk, MP=pow2(M))
    h, final = BDLRUFunction.apply(logits, v, initial_state, norm, L, cfg)
    return h, (final if output_final_state else None)
