"""Mamba2 (SSD) mixer: a chunked PyTorch SSD for any device, the sequential loop it is checked against,
and mamba-ssm's Triton SSD kernel on CUDA when it is installed.

Glossary: B batch, T time, H heads, P head dim, G groups, S d_state.
Per head: `h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_tᵀ`, `y_t = h_t C_t + D x_t` with h `[P, S]`.
"""
import torch
import torch.nn.functional as F
from torch import nn

from statemix.checks import check_positive

from .common import GatedRMSNorm, RunRows, ShortConv, acc, check_backend, dt_bias_init, no_autocast


def _heads(t, H):
    """Broadcast groups to heads: `[B, T, G, S]` -> `[B, T, H, S]`."""
    return t.repeat_interleave(H // t.shape[2], dim=2)


@no_autocast
def ssd_ref(x, dt, A, B, C, D=None, initial_state=None):
    """Sequential SSD. x `[B, T, H, P]`, dt `[B, T, H]`, A `[H]`, B/C `[B, T, G, S]` -> (y, final state `[B, H, P, S]`)."""
    dtype = x.dtype
    x, dt, A, B, C = (acc(t) for t in (x, dt, A, B, C))
    Bh, Ch = _heads(B, x.shape[2]), _heads(C, x.shape[2])
    h = x.new_zeros(x.shape[0], x.shape[2], x.shape[3], B.shape[-1]) if initial_state is None \
        else acc(initial_state)
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        h = decay * h + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append((h * Ch[:, t, :, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + x * D[:, None]
    return y.to(dtype), h


@no_autocast
def ssd_chunked(x, dt, A, B, C, D=None, initial_state=None, chunk_size=64):
    """Chunked SSD (quadratic inside a chunk, a state passed between chunks); same contract as `ssd_ref`."""
    dtype = x.dtype
    Bsz, T, H, P = x.shape
    chunk_size = min(chunk_size, T)
    pad = (-T) % chunk_size
    x, dt, B, C = (F.pad(acc(t), (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C))
    n, L = (T + pad) // chunk_size, chunk_size
    x, dt = x.view(Bsz, n, L, H, P), dt.view(Bsz, n, L, H)
    Bh, Ch = (_heads(t, H).view(Bsz, n, L, H, -1) for t in (B, C))
    cum = torch.cumsum(dt * acc(A), dim=2)  # [B, n, L, H]
    seg = cum[:, :, :, None] - cum[:, :, None]  # [B, n, L(t), L(j), H]
    causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()[..., None]
    decay = torch.exp(seg.masked_fill(~causal, float("-inf")))
    scores = torch.einsum("bnlhs,bnmhs->bnlmh", Ch, Bh) * decay
    y = torch.einsum("bnlmh,bnmh,bnmhp->bnlhp", scores, dt, x)
    to_end = torch.exp(cum[:, :, -1:] - cum) * dt  # [B, n, L, H]
    chunk_states = torch.einsum("bnmh,bnmhs,bnmhp->bnhps", to_end, Bh, x)
    h = x.new_zeros(Bsz, H, P, Bh.shape[-1]) if initial_state is None else acc(initial_state)
    inter = []
    for i in range(n):
        inter.append(torch.einsum("blhs,bhps->blhp", Ch[:, i], h) * torch.exp(cum[:, i])[..., None])
        h = torch.exp(cum[:, i, -1])[..., None, None] * h + chunk_states[:, i]
    y = (y + torch.stack(inter, dim=1)).reshape(Bsz, n * L, H, P)[:, :T]
    if D is not None:
        y = y + x.reshape(Bsz, n * L, H, P)[:, :T] * D[:, None]
    return y.to(dtype), h


def ssd_library(x, dt, A, B, C, D=None, initial_state=None, chunk_size=64):
    """mamba-ssm's Triton SSD (`mamba_chunk_scan_combined`), CUDA only; same contract as `ssd_ref`."""
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    y, final = mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=D, initial_states=initial_state,
                                         return_final_states=True)
    return y, final


def library_available():
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _runs_to_heads(t, K):
    """`[K*B, T, H, ...]` -> `[B, T, K*H, ...]`: K stacked runs become K groups of heads of one batch."""
    return t.unflatten(0, (K, -1)).movedim(0, 2).flatten(2, 3)


def _heads_to_runs(t, K):
    """Inverse of `_runs_to_heads`."""
    return t.unflatten(2, (K, -1)).movedim(2, 0).flatten(0, 1)


class Mamba2(RunRows, nn.Module):
    """Mamba2 block as mamba-ssm's `Mamba2` (in_proj -> causal conv -> SSD -> gated RMSNorm -> out_proj).

    Differs only in taking `d_inner` directly (mamba-ssm: `expand * d_model`), so the state `d_inner * d_state`
    can be set freely. Args: d_model D, d_inner, d_state S, headdim P, ngroups G, d_conv, chunk_size, backend.
    """

    def __init__(self, d_model, d_inner, d_state=4, headdim=8, ngroups=1, d_conv=4, chunk_size=64,
                 backend="auto"):
        super().__init__()
        check_positive(d_model=d_model, d_inner=d_inner, d_state=d_state, headdim=headdim, ngroups=ngroups)
        if d_inner % headdim:
            raise ValueError(f"d_inner: got {d_inner}; must be a multiple of headdim={headdim}")
        self.d_inner, self.d_state, self.headdim, self.ngroups = d_inner, d_state, headdim, ngroups
        self.nheads = d_inner // headdim
        if self.nheads % ngroups:
            raise ValueError(f"ngroups: got {ngroups}; must divide nheads={self.nheads}")
        self.chunk_size, self.backend = chunk_size, check_backend(backend)
        self.state_size = d_inner * d_state
        conv_dim = d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, d_inner + conv_dim + self.nheads, bias=False)
        self.conv = ShortConv(conv_dim, d_conv, bias=True)
        self.dt_bias = nn.Parameter(dt_bias_init(self.nheads))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = GatedRMSNorm(d_inner, group_size=d_inner // ngroups, norm_before_gate=False)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def _split(self, zxbcdt):
        GS = self.ngroups * self.d_state
        return torch.split(zxbcdt, [self.d_inner, self.d_inner + 2 * GS, self.nheads], dim=-1)

    def _ssm_inputs(self, xBC, dt):
        GS = self.ngroups * self.d_state
        x, B, C = torch.split(xBC, [self.d_inner, GS, GS], dim=-1)
        lead = x.shape[:-1]
        return (x.unflatten(-1, (self.nheads, self.headdim)), F.softplus(dt + self._rows(self.dt_bias, dt)),
                -torch.exp(self.A_log), B.reshape(*lead, self.ngroups, self.d_state),
                C.reshape(*lead, self.ngroups, self.d_state))

    def _use_library(self, x):
        return self.backend == "library" or (self.backend == "auto" and x.is_cuda and library_available())

    def forward(self, u):
        """u `[B, T, D]` -> `[B, T, D]`."""
        z, xBC, dt = self._split(self.in_proj(u))
        x, dt, A, B, C = self._ssm_inputs(self.conv(xBC), dt)
        scan = ssd_library if self._use_library(u) else ssd_chunked
        if self.runs == 1:
            y, _ = scan(x, dt, A, B, C, self.D, chunk_size=self.chunk_size)
        else:  # heads never mix, so K stacked runs scan as K groups of heads (A and D are per head)
            K = self.runs
            y, _ = scan(*(_runs_to_heads(t, K) for t in (x, dt)), A.flatten(),
                        *(_runs_to_heads(t, K) for t in (B, C)), self.D.flatten(), chunk_size=self.chunk_size)
            y = _heads_to_runs(y, K)
        return self.out_proj(self.norm(y.flatten(-2), z))

    def step(self, u_t, state=None):
        """One token: u_t `[B, D]`, state (conv `[B, C, K-1]`, ssm `[B, H, P, S]`) or None -> (y_t, state)."""
        conv_state, h = (None, None) if state is None else state
        z, xBC, dt = self._split(self.in_proj(u_t))
        xBC, conv_state = self.conv.step(xBC, conv_state)
        x, dt, A, B, C = self._ssm_inputs(xBC, dt)
        y, h = ssd_ref(x[:, None], dt[:, None], A, B[:, None], C[:, None], self.D, h)
        return self.out_proj(self.norm(y[:, 0].flatten(-2), z)), (conv_state, h)
