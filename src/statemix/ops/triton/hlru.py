"""`hlru_triton`: the fused H-LRU scan with its Triton backward, as an autograd op."""
import torch

from .chunks import scan_bwd, scan_fwd
from .common import NORM_ID, chunk_len, default_config, interpreting, pow2
from .diag import diag_scan
from .pairscan import pair_scan, use_pair
from .hlru_bwd import hlru_bwd_kernel
from .hlru_fwd import hlru_fwd_kernel
from .prep import check_inputs, compute_dtype, empty_result, slot_perm


class HLRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, v, h0, norm, L, cfg):
        B, T, N, K = logits.shape
        M = K - 1
        MP = pow2(M)
        cd = compute_dtype(logits.dtype)
        hin0 = logits.new_zeros(B, N, MP, dtype=cd)
        if h0 is not None:
            hin0[..., :M] = h0.to(cd)[..., slot_perm(-1, M, logits.device)]
        s, fin, phi = scan_fwd(hlru_fwd_kernel, logits, v, hin0, M, NORM_ID[norm], L, cfg)
        final = fin[..., slot_perm(T - 1, M, logits.device)]
        ctx.save_for_backward(logits, v, s, hin0, phi)
        ctx.meta = (norm, L, cfg, h0 is not None, None if h0 is None else h0.dtype)
        return s, final

    @staticmethod
    def backward(ctx, ds, dfinal):
        logits, v, s, hin0, phi = ctx.saved_tensors
        norm, L, cfg, has_h0, h0_dtype = ctx.meta
        B, T, N, K = logits.shape
        M = K - 1
        ds = torch.zeros_like(s) if ds is None else ds.contiguous()
        dfin = torch.zeros_like(hin0)
        if dfinal is not None:
            dfin[..., :M] = dfinal.to(hin0.dtype)[..., slot_perm(T - 1, M, logits.device)]
        dx, dv, dh0 = scan_bwd(hlru_bwd_kernel, logits, v, s, hin0, ds, dfin, phi, M, NORM_ID[norm], L, cfg)
        dh0 = dh0[..., slot_perm(-1, M, logits.device)].to(h0_dtype) if has_h0 else None
        return dx, dv, dh0, None, None, None


def hlru_triton(logits, v, norm="softmax", initial_state=None, output_final_state=False, *, chunk=None, config=None,
                 path=None):
    """H-LRU `s_t = Σ_k a_{t,k} s_{t-k} + a_{t,0} v_t` with gates normalised in-kernel.

    Args:
        logits: `[B, T, N, M+1]` (lag coefficients first, input gate last), fp32/bf16/fp16/fp64.
        v: `[B, T, N]`, same dtype. At M = 1, time-major operands (T the unit-stride axis, see
            `diag.time_major`) are read in place, and faster; any other layout is made contiguous.
        initial_state: `[B, N, M]` = `(s_0, s_{-1}, …)`, or None.
        chunk: steps per time chunk (None: chosen to fill the GPU).
        config: a `common.Config` overriding the launch heuristics.
        path: 'pair' (pair scan, `pairscan.py`), 'pair-joint' (the same with each row's logits loaded and
            stored in one instruction) or 'chunked' (sequential chunks); None picks by shape
            (`pairscan.use_pair`). `chunk` or `config` implies 'chunked'.
    Returns:
        `(s [B, T, N], final_state [B, N, M] in fp32, or None)`.
    """
    check_inputs(logits, v, norm, initial_state, block=False)
    B, T, N, K = logits.shape
    if T == 0:
        return empty_result(v, initial_state, (B, N, K - 1), output_final_state)
    if K == 2 and chunk is None and config is None:
        cd = compute_dtype(logits.dtype)
        h0 = logits.new_zeros(B, N, dtype=cd) if initial_state is None else initial_state[..., 0].to(cd)
        s, final = diag_scan(logits, v, h0, NORM_ID[norm], interpreting())
        return s, (final[..., None] if output_final_state else None)
    logits, v = logits.contiguous(), v.contiguous()
    if use_pair("hlru", logits, chunk, config, path):
        out, final = pair_scan("hlru", logits, v, NORM_ID[norm], initial_state, joint=path == "pair-joint")
        return out, (final if output_final_state else None)
    cfg = config or default_config("hlru", pow2(K - 1))
    L = chunk_len(T, B * -(-N // cfg.block), chunk, MP=pow2(K - 1))
    s, final = HLRUFunction.apply(logits, v, initial_state, norm, L, cfg)
    return s, (final if output_final_state else None)
