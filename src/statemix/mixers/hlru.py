"""H-LRU layers (paper.md §1.1, §1.2, §1.6): N channels, each an order-M linear recurrence."""
import torch
from torch import nn

from statemix.ops import hlru

from .recurrent import RecurrentLayer, init_linear


def lag_stack(s, initial_state, M):
    """Stack `(s_t, s_{t-1}, …, s_{t-M+1})` for every t. s `[B, T, N]` -> `[B, T, N, M]`."""
    B, _, N = s.shape
    if M == 1:
        return s.unsqueeze(-1)
    past = s.new_zeros(B, N, M - 1) if initial_state is None else initial_state[..., : M - 1].to(s.dtype)
    padded = torch.cat([past.flip(-1).transpose(1, 2), s], dim=1)  # [B, T+M-1, N]
    return padded.unfold(1, M, 1).flip(-1)


class HLRU(RecurrentLayer):
    """Selective H-LRU: gates `W_g x + b`, values `W_v x`, output `W_out` over all N·M lagged states.

    Args:
        d_model: D. channels: N. order: M. norm: gate normalisation (see `statemix.ops.NORMS`).
        backend: passed to `statemix.ops.hlru`.
    """

    def __init__(self, d_model, channels, order, norm="softmax", backend="auto"):
        super().__init__(d_model, channels, order, norm, backend, ("channels", "order"))
        self.channels, self.order = channels, order
        self.proj_gates = nn.Linear(d_model, channels * (order + 1), bias=True)
        self.proj_v = nn.Linear(d_model, channels, bias=False)
        self.proj_out = nn.Linear(channels * order, d_model, bias=False)
        init_linear(self)

    def gate_logits(self, x):
        return self.proj_gates(x).unflatten(-1, (self.channels, self.order + 1))

    def forward(self, x, state=None, return_state=False):
        """x `[B, T, D]` -> y `[B, T, D]` (and the final state `[B, N, M]` if return_state)."""
        s, final = hlru(self.gate_logits(x), self.proj_v(x), self.norm, self.backend, state, True)
        y = self.proj_out(lag_stack(s, state, self.order).flatten(-2))
        return (y, final) if return_state else y


class HLRUNonSelective(RecurrentLayer):
    """Time-invariant H-LRU: learned logits `A_w` (init U[0,1)) shared across time; reads only `s_t`, as the paper's code."""

    def __init__(self, d_model, channels, order, norm="softmax", backend="auto"):
        super().__init__(d_model, channels, order, norm, backend, ("channels", "order"))
        self.channels, self.order = channels, order
        self.A_w = nn.Parameter(torch.rand(channels, order + 1))
        self.proj_v = nn.Linear(d_model, channels, bias=False)
        self.proj_out = nn.Linear(channels, d_model, bias=False)
        init_linear(self)

    def forward(self, x, state=None, return_state=False):
        B, T, _ = x.shape
        v = self.proj_v(x)
        s, final = hlru(self.A_w.to(v.dtype).expand(B, T, -1, -1), v, self.norm, self.backend, state, True)
        y = self.proj_out(s)
        return (y, final) if return_state else y
