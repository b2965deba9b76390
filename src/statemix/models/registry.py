"""Architectures × widths. `registry[name].build(d_model=D, width=W)` returns a `[B, T, D] -> [B, T, D]` mixer.

Width is the recurrent state per layer, counted in real scalars, converted to each mixer's native arguments:

| name | native arguments for width W | valid W |
|---|---|---|
| hlru-mM, hlru-ns-mM, lru (= hlru-m1) | channels N = W / M, order M | multiple of M |
| bdlru-mM, bdlru-ns-mM | blocks N = W / M, block size M | multiple of M |
| lru-complex | N = W / 2 complex channels | even |
| lstm | hidden = W / 2 (h and c) | even |
| mamba2 | d_state 4, headdim 8, d_inner = W / 4 | multiple of 32 |
| gdn, dproduct, dproduct-h4 | H heads of K×K state, W = H·K², H first of 4, 2, 1 | H·K² with K ≥ 2 |

Short-convolution buffers (mamba2, gdn, dproduct) are not counted: they hold inputs, not recurrent state.

`Arch.smallest(d_model)` is the smallest width the paper's configs reach (paper.md §3.3–3.4), which grids must
not go below: H-LRU / BD-LRU N ≥ 2 (width 2M); LSTM hidden 8 (width 16); Mamba2 expand 1, i.e. d_inner = d_model
(width 4·d_model at d_state 4); Gated DeltaNet / DeltaProduct 2 heads of head_dim 8 (width 128). The complex LRU
is not in the paper; its floor is one channel pair.
"""
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from statemix.checks import is_positive_int

from statemix.mixers import (BDLRU, HLRU, LSTM, BDLRUNonSelective, GatedDeltaNet, GatedDeltaProduct, HLRUNonSelective,
                             LRUComplex, Mamba2)

DEFAULT_WIDTHS = (64, 128, 256, 512)
GDN_HEADS = (4, 2, 1)


def multiple_of(unit, key, make):
    """Native args for widths that must be multiples of `unit`: `{key: W // unit}` merged into `make`."""
    def native(width):
        if width % unit:
            return None
        return {key: width // unit, **make}
    return native


def square_heads(width):
    """Split W = H·K² with H from GDN_HEADS (first that fits) and K ≥ 2."""
    for heads in GDN_HEADS:
        if width % heads == 0:
            k = math.isqrt(width // heads)
            if k >= 2 and k * k * heads == width:
                return {"num_heads": heads, "head_dim": k}
    return None


@dataclass(frozen=True)
class Arch:
    """One architecture: how a width becomes native arguments, the mixer factory, and the config options
    (`model.<option>`, passed under the same name) that the mixer takes."""

    name: str
    description: str
    rule: str
    native_args: Callable[[int], dict | None]
    factory: Callable
    widths: tuple = field(default=DEFAULT_WIDTHS)
    smallest: Callable[[int], int] = field(default=lambda d_model: 1)
    options: tuple = ()

    def native(self, width):
        """Native constructor arguments for `width`; ValueError naming the valid widths otherwise."""
        if not is_positive_int(width):
            raise ValueError(f"width: got {width!r} for {self.name}; must be a positive int, {self.rule}")
        args = self.native_args(width)
        if args is None:
            raise ValueError(f"width: got {width} for {self.name}; valid widths are {self.rule} "
                             f"(defaults {list(self.widths)})")
        return args

    def check_size(self, d_model, width):
        """ValueError unless `width` is valid and at least the paper's smallest config at `d_model`."""
        self.native(width)
        floor = self.smallest(d_model)
        if width < floor:
            raise ValueError(f"width: got {width} for {self.name} at d_model {d_model}; the paper's smallest "
                             f"config has width {floor}")

    def build(self, d_model, width, **options):
        """The mixer for (d_model, width); `options` (those in `self.options`) go to the constructor."""
        args = self.native(width)
        for key in options:
            if key not in self.options:
                raise ValueError(f"mixer option: got {key!r} for {self.name}; "
                                 f"allowed: {', '.join(sorted(self.options))}")
        return self.factory(d_model=d_model, **args, **options)

    def param_count(self, d_model, width):
        """Trainable parameters of one mixer, counted on the meta device (nothing is allocated)."""
        with torch.device("meta"):
            module = self.build(d_model, width)
        return sum(p.numel() for p in module.parameters())


class UnknownArch(KeyError, ValueError):
    def __str__(self):
        return self.args[0]


class Registry(dict):
    """name -> Arch; an unknown name raises an error (KeyError and ValueError) that lists the valid names."""

    def __missing__(self, name):
        raise UnknownArch(f"arch: got {name!r}; valid: {', '.join(sorted(self))}")


def _aligned(unit):
    return tuple(w - w % unit for w in DEFAULT_WIDTHS)


def _entries():
    lrnn, baseline = ("norm", "backend"), ("backend",)
    for m in (1, 2, 3, 4, 5):
        yield Arch(f"hlru-m{m}", f"H-LRU, order {m}", f"multiples of {m}",
                   multiple_of(m, "channels", {"order": m}), HLRU, _aligned(m), lambda d, m=m: 2 * m, lrnn)
    for m in (1, 2, 3, 4, 5, 8):
        yield Arch(f"bdlru-m{m}", f"BD-LRU, block size {m}", f"multiples of {m}",
                   multiple_of(m, "blocks", {"block_size": m}), BDLRU, _aligned(m), lambda d, m=m: 2 * m, lrnn)
    for m in (2, 4):
        yield Arch(f"hlru-ns-m{m}", f"non-selective H-LRU, order {m}", f"multiples of {m}",
                   multiple_of(m, "channels", {"order": m}), HLRUNonSelective, _aligned(m), lambda d, m=m: 2 * m, lrnn)
        yield Arch(f"bdlru-ns-m{m}", f"non-selective BD-LRU, block size {m}", f"multiples of {m}",
                   multiple_of(m, "blocks", {"block_size": m}), BDLRUNonSelective, _aligned(m), lambda d, m=m: 2 * m,
                   lrnn)
    yield Arch("lru", "selective diagonal LRU: H-LRU at order 1", "any positive int",
               multiple_of(1, "channels", {"order": 1}), HLRU, smallest=lambda d: 2, options=lrnn)
    yield Arch("lru-complex", "Orvieto et al. complex diagonal LRU", "even",
               multiple_of(2, "channels", {}), LRUComplex, smallest=lambda d: 2)
    yield Arch("lstm", "torch LSTM + output projection", "even", multiple_of(2, "hidden", {}), LSTM, smallest=lambda d: 16)
    yield Arch("mamba2", "Mamba2 (SSD), d_state 4, headdim 8", "multiples of 32",
               lambda w: None if w % 32 else {"d_inner": w // 4, "d_state": 4, "headdim": 8}, Mamba2,
               smallest=lambda d: 4 * d, options=baseline)
    rule = "H·K² with H in (4, 2, 1) and K >= 2"
    yield Arch("gdn", "Gated DeltaNet, β in [0, 2]", rule, square_heads, GatedDeltaNet, smallest=lambda d: 128,
               options=baseline)
    for n_h, suffix in ((2, ""), (4, "-h4")):
        yield Arch(f"dproduct{suffix}", f"Gated DeltaProduct, {n_h} Householder steps, β in [0, 2]", rule,
                   lambda w, n_h=n_h: None if square_heads(w) is None else {**square_heads(w),
                                                                             "num_householder": n_h},
                   GatedDeltaProduct, smallest=lambda d: 128, options=baseline)


registry = Registry((arch.name, arch) for arch in _entries())
