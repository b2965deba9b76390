"""BD-LRU layers (paper.md §1.1, §1.3, §1.6): N dense M×M blocks with input-dependent rows."""
import torch
from torch import nn

from statemix.ops import bdlru

from .recurrent import RecurrentLayer, init_linear


class BDLRU(RecurrentLayer):
    """Selective BD-LRU: per-row gate logits `W_g x + b`, values `W_v x`, output `W_out` over the N·M state.

    Args:
        d_model: D. blocks: N. block_size: M. norm: gate normalisation. backend: passed to `statemix.ops.bdlru`.
    """

    def __init__(self, d_model, blocks, block_size, norm="softmax", backend="auto"):
        super().__init__(d_model, blocks, block_size, norm, backend, ("blocks", "block_size"))
        self.blocks, self.block_size = blocks, block_size
        M = block_size
        self.proj_gates = nn.Linear(d_model, blocks * M * (M + 1), bias=True)
        self.proj_v = nn.Linear(d_model, blocks * M, bias=False)
        self.proj_out = nn.Linear(blocks * M, d_model, bias=False)
        init_linear(self)

    def forward(self, x, state=None, return_state=False):
        """x `[B, T, D]` -> y `[B, T, D]` (and the final state `[B, N, M]` if return_state)."""
        M = self.block_size
        logits = self.proj_gates(x).unflatten(-1, (self.blocks, M, M + 1))
        v = self.proj_v(x).unflatten(-1, (self.blocks, M))
        h, final = bdlru(logits, v, self.norm, self.backend, state, True)
        y = self.proj_out(h.flatten(-2))
        return (y, final) if return_state else y


class BDLRUNonSelective(RecurrentLayer):
    """Time-invariant BD-LRU: learned logits `A_w` `[N, M, M+1]` (init U[0,1)) shared across time."""

    def __init__(self, d_model, blocks, block_size, norm="softmax", backend="auto"):
        super().__init__(d_model, blocks, block_size, norm, backend, ("blocks", "block_size"))
        self.blocks, self.block_size = blocks, block_size
        self.A_w = nn.Parameter(torch.rand(blocks, block_size, block_size + 1))
        self.proj_v = nn.Linear(d_model, blocks * block_size, bias=False)
        self.proj_out = nn.Linear(blocks * block_size, d_model, bias=False)
        init_linear(self)

    def forward(self, x, state=None, return_state=False):
        B, T, _ = x.shape
        v = self.proj_v(x).unflatten(-1, (self.blocks, self.block_size))
        h, final = bdlru(self.A_w.to(v.dtype).expand(B, T, -1, -1, -1), v, self.norm, self.backend, state, True)
        y = self.proj_out(h.flatten(-2))
        return (y, final) if return_state else y
