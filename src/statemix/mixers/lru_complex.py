"""Complex diagonal LRU (Orvieto et al. 2023): `h_t = λ ⊙ h_{t-1} + γ ⊙ (B x_t)`, `y_t = Re(C h_t) + D ⊙ x_t`,
with `λ = exp(-exp(ν_log) + i exp(θ_log))`, ring initialisation and γ-normalisation (tasks.md §4.1).

Glossary: B batch, T time, D model width, N complex channels (2N real state scalars).
The mixer is the LRU core only; the backbone supplies norm, residual and the channel mixer.
"""
import math

import torch
from torch import nn

from statemix.checks import check_positive

from .common import no_autocast


@no_autocast
def lru_scan_ref(log_lam, u, initial_state=None):
    """Sequential `h_t = λ h_{t-1} + u_t`. log_lam `[N]` complex, u `[B, T, N]` complex -> (h `[B, T, N]`, h_T)."""
    lam = torch.exp(log_lam)
    h = u.new_zeros(u.shape[0], u.shape[2]) if initial_state is None else initial_state
    hs = []
    for t in range(u.shape[1]):
        h = lam * h + u[:, t]
        hs.append(h)
    return torch.stack(hs, dim=1), h


@no_autocast
def lru_scan_chunked(log_lam, u, initial_state=None, chunk_size=64):
    """Chunked form of `lru_scan_ref`: a causal Toeplitz product `λ^{t-j}` inside a chunk, carry between chunks."""
    Bsz, T, N = u.shape
    L = min(chunk_size, T)
    idx = torch.arange(L, device=u.device)
    lag = (idx[:, None] - idx[None, :]).to(log_lam.real.dtype)
    causal = (lag >= 0)[..., None]
    kernel = torch.where(causal, torch.exp(lag.clamp(min=0)[..., None] * log_lam), 0)  # [L(t), L(j), N]
    carry = torch.exp((idx + 1).to(lag.dtype)[:, None] * log_lam)  # λ^{t+1}, [L, N]
    h = u.new_zeros(Bsz, N) if initial_state is None else initial_state
    out = []
    for s in range(0, T, L):
        chunk = u[:, s:s + L]
        n = chunk.shape[1]
        hs = torch.einsum("tjn,bjn->btn", kernel[:n, :n], chunk) + carry[:n] * h[:, None]
        out.append(hs)
        h = hs[:, -1]
    return torch.cat(out, dim=1), h


class LRUComplex(nn.Module):
    """Orvieto et al.'s LRU. Args: d_model D, channels N, r_min/r_max (ring radii), max_phase.

    Defaults r ∈ [0.9, 0.999], phase ∈ [0, 2π): the LRU paper's main setting. B, C ~ N(0, 1/(2D)), N(0, 1/N)
    per real/imaginary part; D ~ N(0, 1). All are plain Parameters, so the MAD backbones' Linear re-init
    leaves them alone.
    """

    def __init__(self, d_model, channels, r_min=0.9, r_max=0.999, max_phase=2 * math.pi, chunk_size=64):
        super().__init__()
        check_positive(d_model=d_model, channels=channels)
        if not 0 <= r_min < r_max <= 1:
            raise ValueError(f"r_min, r_max: got {r_min!r}, {r_max!r}; need 0 <= r_min < r_max <= 1")
        self.channels, self.chunk_size = channels, chunk_size
        self.state_size = 2 * channels
        u1, u2 = torch.rand(channels), torch.rand(channels)
        mod_sq = u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(mod_sq)))
        self.theta_log = nn.Parameter(torch.log(max_phase * u2 + 1e-12))
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - mod_sq)))
        self.B_re = nn.Parameter(torch.randn(channels, d_model) / math.sqrt(2 * d_model))
        self.B_im = nn.Parameter(torch.randn(channels, d_model) / math.sqrt(2 * d_model))
        self.C_re = nn.Parameter(torch.randn(d_model, channels) / math.sqrt(channels))
        self.C_im = nn.Parameter(torch.randn(d_model, channels) / math.sqrt(channels))
        self.D = nn.Parameter(torch.randn(d_model))

    def log_lambda(self):
        """log λ `[N]` complex: real part −exp(ν_log) < 0, so |λ| < 1 for any parameter value."""
        return torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))

    def _inputs(self, x):
        """γ ⊙ (B x): x `[..., D]` -> `[..., N]` complex."""
        x = x.to(self.B_re.dtype)
        Bx = torch.complex(x @ self.B_re.T, x @ self.B_im.T)
        return Bx * torch.exp(self.gamma_log)

    def _readout(self, h, x):
        return (h.real @ self.C_re.T - h.imag @ self.C_im.T + self.D * x.to(self.D.dtype)).to(x.dtype)

    @no_autocast
    def forward(self, x):
        """x `[B, T, D]` -> `[B, T, D]`."""
        h, _ = lru_scan_chunked(self.log_lambda(), self._inputs(x), chunk_size=self.chunk_size)
        return self._readout(h, x)

    @no_autocast
    def step(self, x_t, state=None):
        """One token: x_t `[B, D]`, state h `[B, N]` complex or None -> (y_t `[B, D]`, h)."""
        u = self._inputs(x_t)
        h = u if state is None else torch.exp(self.log_lambda()) * state + u
        return self._readout(h, x_t), h
