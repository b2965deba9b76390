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

from statemix.mixers.common import RunRows


def _stack(tensors) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach() for t in tensors]))


def _accept(twin, layers) -> None:
    """Raise if `twin` cannot stack `layers` (its `refuses` says why)."""
    why = twin.refuses(layers[0])
    if why:
        raise ValueError(f"{twin.__name__}: {why}")


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

    @staticmethod
    def refuses(module) -> str | None:
        if module.padding_idx is not None or module.max_norm is not None:
            return "an Embedding with padding_idx/max_norm"
        return None

    def __init__(self, layers):
        super().__init__()
        _accept(StackedEmbedding, layers)
        self.weight = _stack(m.weight for m in layers)

    def forward(self, tokens):
        K, V, D = self.weight.shape
        offset = torch.arange(K, device=tokens.device)[:, None] * V
        flat = (tokens.reshape(K, -1) + offset).reshape(tokens.shape)
        return F.embedding(flat, self.weight.reshape(K * V, D))


def _block_diagonal(w: torch.Tensor) -> torch.Tensor:
    """`[K, 4H, I]` -> `[4KH, KI]`: gate g of run k at rows g*KH + k*H, its inputs at columns k*I. Built by
    indexing, not arithmetic, so it keeps the weight's dtype under autocast: cuDNN wants every LSTM weight in
    one dtype, and autocast then casts them all as it does an nn.LSTM's."""
    K, four_h, inputs = w.shape
    blocks = w.new_zeros(4, K, four_h // 4, K, inputs)
    k = torch.arange(K, device=w.device)
    blocks[:, k, :, k] = w.view(K, 4, four_h // 4, inputs)
    return blocks.reshape(four_h * K, K * inputs)


class StackedLSTM(nn.Module):
    """K one-layer, batch-first LSTMs as one LSTM of hidden K*H with block-diagonal weights, so the K runs take
    one cuDNN call. Each run's gate rows and inputs stay in their own block (the off-diagonal blocks are built
    as zeros each call, so they carry no parameters and no gradient). Input `[K*B, T, D]`, state `[1, K*B, H]`."""

    @staticmethod
    def refuses(module) -> str | None:
        shape = (module.num_layers, module.bidirectional, module.proj_size, module.batch_first, module.bias)
        return None if shape == (1, False, 0, True, True) else \
            "an LSTM that is not one-layer, unidirectional, batch-first with biases"

    def __init__(self, layers):
        super().__init__()
        _accept(StackedLSTM, layers)
        self.hidden = layers[0].hidden_size
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            setattr(self, name, _stack(getattr(m, name) for m in layers))

    def forward(self, x, state=None):
        K, H = self.weight_ih_l0.shape[0], self.hidden
        B, T = x.shape[0] // K, x.shape[1]
        xs = x.reshape(K, B, T, -1).permute(1, 2, 0, 3).reshape(B, T, -1)
        if state is not None:
            state = tuple(s.reshape(1, K, B, H).permute(0, 2, 1, 3).reshape(1, B, K * H) for s in state)
        else:
            zero = xs.new_zeros(1, B, K * H)
            state = (zero, zero)
        weights = [_block_diagonal(self.weight_ih_l0), _block_diagonal(self.weight_hh_l0),
                   self.bias_ih_l0.view(K, 4, H).transpose(0, 1).reshape(-1),
                   self.bias_hh_l0.view(K, 4, H).transpose(0, 1).reshape(-1)]
        out, h, c = torch._VF.lstm(xs, state, weights, True, 1, 0.0, self.training, False, True)
        out = out.reshape(B, T, K, H).permute(2, 0, 1, 3).reshape(K * B, T, H)
        h, c = (s.reshape(1, B, K, H).permute(0, 2, 1, 3).reshape(1, K * B, H) for s in (h, c))
        return out, (h, c)


class StackedConv1d(nn.Module):
    """K depthwise Conv1d layers: x `[K*B, C, T]` -> `[K*B, C, T']`, as one depthwise conv over K*C channels."""

    @staticmethod
    def refuses(module) -> str | None:
        depthwise = module.groups == module.in_channels == module.out_channels
        return None if depthwise else "a Conv1d that is not depthwise"

    def __init__(self, layers):
        super().__init__()
        _accept(StackedConv1d, layers)
        first = layers[0]
        self.padding, self.stride, self.dilation = first.padding, first.stride, first.dilation
        self.weight = _stack(m.weight for m in layers)
        self.bias = _stack(m.bias for m in layers) if first.bias is not None else None

    def forward(self, x):
        K, C = self.weight.shape[:2]
        xs = x.unflatten(0, (K, -1)).transpose(0, 1).flatten(1, 2)
        bias = None if self.bias is None else self.bias.flatten()
        y = F.conv1d(xs, self.weight.flatten(0, 1), bias, self.stride, self.padding, self.dilation, K * C)
        return y.unflatten(1, (K, C)).transpose(0, 1).flatten(0, 1)


def _own_parameters_stacked(layers):
    """A RunRows module (statemix.mixers.common) of K runs: its own parameters become `[K, ...]` and `runs` = K;
    its children are replaced by their own twins afterwards."""
    twin = copy.deepcopy(layers[0])
    for name, _ in layers[0].named_parameters(recurse=False):
        setattr(twin, name, _stack(getattr(m, name) for m in layers))
    twin.runs = len(layers)
    return twin


TWINS = {nn.Linear: StackedLinear, nn.LayerNorm: StackedNorm, nn.RMSNorm: StackedNorm,
         nn.Embedding: StackedEmbedding, nn.LSTM: StackedLSTM, nn.Conv1d: StackedConv1d}


def _twin(module: nn.Module):
    """The stacked twin's maker for `module`'s type, or None."""
    return TWINS.get(type(module)) or (_own_parameters_stacked if isinstance(module, RunRows) else None)


def unstackable(model: nn.Module) -> str | None:
    """Why `model` cannot be stacked (a module with parameters outside TWINS), or None."""
    for name, module in model.named_modules():
        twin = _twin(module)
        if any(True for _ in module.parameters(recurse=False)) and twin is None:
            return f"{name or 'model'} ({type(module).__name__}) owns parameters that have no stacked twin"
        why = getattr(twin, "refuses", lambda _: None)(module)
        if why:
            return f"{name or 'model'} is {why}"
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
        twin = _twin(module)
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
