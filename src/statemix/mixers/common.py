"""Pieces shared by the baseline mixers: causal short convolution, gated RMSNorm, gate inits, backend choice."""
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

BASELINE_BACKENDS = ("auto", "torch", "library")


def acc(t):
    """Accumulation dtype: fp32, or fp64 for fp64 inputs."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def no_autocast(fn):
    """Run `fn` with autocast off, so recurrent state math stays in fp32 under bf16 mixed precision."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)
    return wrapper


def check_backend(backend):
    if backend not in BASELINE_BACKENDS:
        raise ValueError(f"backend: got {backend!r}; allowed: {', '.join(BASELINE_BACKENDS)}")
    return backend


def dt_bias_init(n, dt_min=1e-3, dt_max=0.1, dt_floor=1e-4):
    """Inverse-softplus of dt ~ log-uniform[dt_min, dt_max] (floored), Mamba2's and Gated DeltaNet's init."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_floor)
    return dt + torch.log(-torch.expm1(-dt))


class ShortConv(nn.Module):
    """Causal depthwise Conv1d over time, optional SiLU. x `[B, T, C]`; the step state holds the last K-1 inputs."""

    def __init__(self, channels, kernel_size=4, bias=False, activation=True):
        super().__init__()
        self.kernel_size, self.activation = kernel_size, activation
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=bias,
                              padding=kernel_size - 1)

    def forward(self, x):
        y = self.conv(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)
        return F.silu(y) if self.activation else y

    def step(self, x_t, state):
        """x_t `[B, C]`, state `[B, C, K-1]` or None -> (y_t `[B, C]`, new state)."""
        if state is None:
            state = x_t.new_zeros(x_t.shape[0], x_t.shape[1], self.kernel_size - 1)
        window = torch.cat([state, x_t[..., None]], dim=-1)  # [B, C, K]
        y = (window * self.conv.weight[:, 0]).sum(-1)
        if self.conv.bias is not None:
            y = y + self.conv.bias
        return (F.silu(y) if self.activation else y), window[..., 1:]


class RunRows:
    """Mixin for a module whose own parameters may carry a leading run dimension: statemix.stack stacks K
    trained models into one (`runs` = K, each own parameter `[K, ...]`) and folds the runs into the batch, so
    rows k*B .. k*B+B-1 of every activation belong to run k. `_rows` gives each row its run's slice."""

    runs = 1

    def _rows(self, p, t):
        """`p` `[..., X]` broadcastable against `t` `[R, ..., X]`: `p` itself for one run; for K runs (`p`
        `[K, X]`), run k's `p[k]` on run k's rows, as `[R, 1, ..., X]`."""
        if self.runs == 1:
            return p
        per_row = p.repeat_interleave(t.shape[0] // self.runs, dim=0)
        return per_row.view(per_row.shape[0], *[1] * (t.dim() - p.dim()), *per_row.shape[1:])


class GatedRMSNorm(RunRows, nn.Module):
    """RMSNorm over groups of the last dim with a SiLU gate.

    norm_before_gate=False: `rms(x * silu(z)) * w` (Mamba2); True: `rms(x) * w * silu(z)` (fla's FusedRMSNormGated).
    """

    def __init__(self, dim, group_size=None, eps=1e-5, norm_before_gate=False):
        super().__init__()
        self.group_size = group_size or dim
        self.eps, self.norm_before_gate = eps, norm_before_gate
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x, z):
        dtype = x.dtype
        x, z = acc(x), acc(z)
        if not self.norm_before_gate:
            x = x * F.silu(z)
        g = x.unflatten(-1, (-1, self.group_size))
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        y = g.flatten(-2) * self._rows(self.weight, x)
        if self.norm_before_gate:
            y = y * F.silu(z)
        return y.to(dtype)
