"""K models of one architecture stacked into one batched model: weights gain a leading run dimension.

Every module that owns parameters is replaced, at the same path and with the same parameter names, by a
stacked twin holding the K runs' tensors as `[K, ...]`. Activations keep the run folded into the batch:
`[K*B, ...]`, rows `k*B .. k*B+B-1` belonging to run k, so the scans (H-LRU, BD-LRU, every op that treats
batch rows independently) run unchanged on all K runs at once, and each Linear becomes one batched GEMM.
Because names and order match, `state_dict()[name][k]` is run k's tensor, and AdamW over the stacked
parameters is AdamW of each run (it is elementwise).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def _stack(tensors) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach() for t in tensors]))


def _runs(x: torch.Tensor, K: int) -> torch.Tensor:
    return x.reshape(K, -1, x.shape[-1])


class StackedLinear(nn.Module):
    """K Linear layers: x `[K*B, ..., in]` -> `[K*B, ..., out]` with run k's weight on its rows."""

    def __init__(self, layers):
        super().__init__()
        self.weight = _stack(m.weight for m in layers)
        self.bias = _stack(m.bias for m in layers) if layers[0].bias is not None else None

    def forward(self, x):
        xs = _runs(x, self.weight.shape[0])
        w = self.weight.transpose(1, 2)
        y = torch.bmm(xs, w) if self.bias is None else torch.baddbmm(self.bias[:, None], xs, w)
        return y.reshape(*x.shape[:-1], y.shape[-1])


class StackedNorm(nn.Module):
    """K LayerNorms or RMSNorms over the last dim, each with its own affine weights."""

    def __init__(self, layers):
        super().__init__()
        first = layers[0]
        self.kind = "layer" if isinstance(first, nn.LayerNorm) else "rms"
        self.shape, self.eps = tuple(first.normalized_shape), first.eps
        self.weight = _stack(m.weight for m in layers)
        self.bias = _stack(m.bias for m in layers) if getattr(first, "bias", None) is not None else None

    def forward(self, x):
        if self.kind == "layer":
            y = F.layer_norm(x, self.shape, eps=self.eps)
        else:
            y = F.rms_norm(x, self.shape, eps=self.eps)
        K = self.weight.shape[0]
        ys = _runs(y, K) * self.weight[:, None]
        if self.bias is not None:
            ys = ys + self.bias[:, None]
        return ys.reshape(x.shape)


class StackedEmbedding(nn.Module):
    """K embedding tables: tokens `[K*B, ...]` -> `[K*B, ..., D]`, run k looking up its own table."""

    def __init__(self, layers):
        super().__init__()
        self.weight = _stack(m.weight for m in layers)

    def forward(self, tokens):
        K, V, D = self.weight.shape
        offset = torch.arange(K, device=tokens.device)[:, None] * V
        flat = (tokens.reshape(K, -1) + offset).reshape(tokens.shape)
        return F.embedding(flat, self.weight.reshape(K * V, D))


TWINS = {nn.Linear: StackedLinear, nn.LayerNorm: StackedNorm, nn.RMSNorm: StackedNorm,
         nn.Embedding: StackedEmbedding}


def unstackable(model: nn.Module) -> str | None:
    """Why `model` cannot be stacked (a module with parameters outside TWINS), or None."""
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)) and type(module) not in TWINS:
            return f"{name or 'model'} ({type(module).__name__}) owns parameters that have no stacked twin"
        if isinstance(module, nn.Embedding) and (module.padding_idx is not None or module.max_norm is not None):
            return f"{name} is an Embedding with padding_idx/max_norm"
    return None


def stack_models(models: list[nn.Module]) -> nn.Module:
    """One module running all `models` (same architecture and shapes) on run-folded batches `[K*B, ...]`."""
    why = unstackable(models[0])
    if why is not None:
        raise ValueError(f"cannot stack these models: {why}")
    shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in models]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("cannot stack models whose parameter names or shapes differ")
    stacked = copy.deepcopy(models[0])
    for name, module in list(models[0].named_modules()):
        twin = TWINS.get(type(module))
        if twin is None:
            continue
        parent, _, attr = name.rpartition(".")
        setattr(stacked.get_submodule(parent), attr, twin([m.get_submodule(name) for m in models]))
    names = [n for n, _ in stacked.named_parameters()]
    if names != [n for n, _ in models[0].named_parameters()]:
        raise ValueError("stacked parameters do not line up with the models' parameters")
    return stacked


def unstack_state(stacked: nn.Module, k: int) -> dict:
    """Run k's state_dict, in the original models' format."""
    return {name: value[k] for name, value in stacked.state_dict().items()}
