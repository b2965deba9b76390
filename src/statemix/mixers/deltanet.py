"""Gated DeltaNet and Gated DeltaProduct mixers, laid out as fla's `GatedDeltaNet` / `GatedDeltaProduct`
layers with the paper's baseline settings: negative eigenvalues (β ∈ [0, 2]), forget gate, output gate,
short convolutions, expand_v = 1.

Glossary: B batch, T time, D model width, H heads, K = V head dim, n_h Householder steps.
"""
import torch
import torch.nn.functional as F
from torch import nn

from statemix.checks import check_positive

from .common import GatedRMSNorm, RunRows, ShortConv, check_backend, dt_bias_init
from .delta_rule import (gated_delta_product_chunked, gated_delta_product_library, gated_delta_product_ref,
                         gated_delta_rule_chunked, gated_delta_rule_library, l2norm, library_status)


class GatedDeltaProduct(RunRows, nn.Module):
    """Gated DeltaProduct: n_h Householder (generalised delta-rule) steps per token, one decay per token.

    Args: d_model D, num_heads H, head_dim K (= V), num_householder n_h, allow_neg_eigval (β ∈ [0, 2]),
    conv_size, chunk_size, backend ("auto" | "torch" | "library").
    State size per layer: H * K * V.
    """

    def __init__(self, d_model, num_heads, head_dim, num_householder=2, allow_neg_eigval=True, conv_size=4,
                 chunk_size=64, backend="auto"):
        super().__init__()
        check_positive(d_model=d_model, num_heads=num_heads, head_dim=head_dim, num_householder=num_householder)
        self.H, self.K, self.n_h = num_heads, head_dim, num_householder
        self.allow_neg_eigval, self.chunk_size = allow_neg_eigval, chunk_size
        self.backend = check_backend(backend)
        self.state_size = num_heads * head_dim * head_dim
        dim = num_heads * head_dim
        self.q_proj = nn.Linear(d_model, dim, bias=False)
        self.k_proj = nn.Linear(d_model, dim * num_householder, bias=False)
        self.v_proj = nn.Linear(d_model, dim * num_householder, bias=False)
        self.b_proj = nn.Linear(d_model, num_heads * num_householder, bias=False)
        self.a_proj = nn.Linear(d_model, num_heads, bias=False)
        self.A_log = nn.Parameter(torch.log(torch.empty(num_heads).uniform_(0, 16)))
        self.dt_bias = nn.Parameter(dt_bias_init(num_heads))
        self.q_conv = ShortConv(dim, conv_size)
        self.k_conv = ShortConv(dim * num_householder, conv_size)
        self.v_conv = ShortConv(dim * num_householder, conv_size)
        self.g_proj = nn.Linear(d_model, dim, bias=False)
        self.o_norm = GatedRMSNorm(head_dim, norm_before_gate=True)
        self.o_proj = nn.Linear(dim, d_model, bias=False)

    def _gates(self, x):
        """Log decay g `[..., H]` and β `[..., n_h * H]` (sub-step major)."""
        a = self.a_proj(x).float()
        g = -torch.exp(self._rows(self.A_log, a)) * F.softplus(a + self._rows(self.dt_bias, a))
        beta = torch.sigmoid(self.b_proj(x))
        return g, beta * 2 if self.allow_neg_eigval else beta

    def _heads(self, q, k, v, beta):
        """Split heads and Householder sub-steps: q `[B, T, H, K]`, k/v `[B, T*n_h, H, K]`, β `[B, T*n_h, H]`."""
        Bsz, T = q.shape[:2]
        q = l2norm(q.reshape(Bsz, T, self.H, self.K))
        k = l2norm(k.reshape(Bsz, T * self.n_h, self.H, self.K))
        return q, k, v.reshape(Bsz, T * self.n_h, self.H, self.K), beta.reshape(Bsz, T * self.n_h, self.H)

    def _recurrence(self, x):
        if self.backend == "torch" or (self.backend == "auto" and not x.is_cuda):
            return gated_delta_rule_chunked if self.n_h == 1 else gated_delta_product_chunked
        if self.backend == "auto" and not library_status(training=torch.is_grad_enabled())[0]:
            return gated_delta_rule_chunked if self.n_h == 1 else gated_delta_product_chunked
        return gated_delta_rule_library if self.n_h == 1 else gated_delta_product_library

    def _output(self, o, x):
        o = self.o_norm(o, self.g_proj(x).unflatten(-1, (self.H, self.K)))
        return self.o_proj(o.flatten(-2))

    def forward(self, x):
        """x `[B, T, D]` -> `[B, T, D]`."""
        q, k, v = self.q_conv(self.q_proj(x)), self.k_conv(self.k_proj(x)), self.v_conv(self.v_proj(x))
        g, beta = self._gates(x)
        q, k, v, beta = self._heads(q, k, v, beta)
        o, _ = self._recurrence(x)(q, k, v, g, beta, chunk_size=self.chunk_size)
        return self._output(o, x)

    def step(self, x_t, state=None):
        """One token: x_t `[B, D]`, state (q, k, v conv states, S `[B, H, K, V]`) or None -> (y_t, state)."""
        cq, ck, cv, S = (None,) * 4 if state is None else state
        q, cq = self.q_conv.step(self.q_proj(x_t), cq)
        k, ck = self.k_conv.step(self.k_proj(x_t), ck)
        v, cv = self.v_conv.step(self.v_proj(x_t), cv)
        g, beta = self._gates(x_t[:, None])
        q, k, v, beta = self._heads(q[:, None], k[:, None], v[:, None], beta)
        o, S = gated_delta_product_ref(q, k, v, g, beta, initial_state=S)
        return self._output(o, x_t[:, None])[:, 0], (cq, ck, cv, S)


class GatedDeltaNet(GatedDeltaProduct):
    """Gated DeltaNet (Yang et al. 2025): the one-Householder case, with negative eigenvalues allowed."""

    def __init__(self, d_model, num_heads, head_dim, allow_neg_eigval=True, conv_size=4, chunk_size=64,
                 backend="auto"):
        super().__init__(d_model, num_heads, head_dim, 1, allow_neg_eigval, conv_size, chunk_size, backend)
