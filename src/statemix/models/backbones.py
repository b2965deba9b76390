"""MAD's two backbones (tasks.md §1.1, §1.6): the language model and the compression AutoEncoder.

Glossary: B batch, T time, D model width, V vocabulary.
Both build a stack of pre-norm residual sub-layers `x <- x + layer(norm(x))` alternating a sequence mixer
(from `registry`) and a channel mixer (SwiGLU by default). The defaults follow the paper's fork (IgorDn8/mad-lab):
its LanguageModel redraws every Linear weight ~ N(0, 0.02²), and its AutoEncoder adds one learned positional
table to the encoder and the decoder inputs. Upstream MAD's choices stay available (`init="mad"`,
`positions="sincos"`).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from statemix.checks import check_positive

from .registry import registry

BACKBONE_NORMS = {"layernorm": nn.LayerNorm, "rmsnorm": nn.RMSNorm}


class SwiGLU(nn.Module):
    """MAD's SwiGLU: `w3(silu(w1 x) * w2 x)`, inner width int(8D/3) rounded up to a multiple of 16, no biases."""

    def __init__(self, d_model, multiple_of=16):
        super().__init__()
        inner = int(2 * d_model * 4 / 3)
        inner = multiple_of * ((inner + multiple_of - 1) // multiple_of)
        self.w1 = nn.Linear(d_model, inner, bias=False)
        self.w2 = nn.Linear(d_model, inner, bias=False)
        self.w3 = nn.Linear(inner, d_model, bias=False)

    def forward(self, x):
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class MLP(nn.Module):
    """MAD's MLP: Linear(D, 4D) -> tanh-GELU -> Linear(4D, D), with biases."""

    def __init__(self, d_model):
        super().__init__()
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


CHANNEL_MIXERS = {"swiglu": SwiGLU, "mlp": MLP}
INITS = ("fork", "mad")
POSITIONS = ("learned", "sincos")


class Residual(nn.Module):
    """Pre-norm residual sub-layer: `x + layer(norm(x))`."""

    def __init__(self, norm, layer):
        super().__init__()
        self.norm, self.layer = norm, layer

    def forward(self, x):
        return x + self.layer(self.norm(x))


def sincos_positions(length, dim):
    """MAD's fixed sinusoidal table `[length, dim]`: sin then cos halves, frequencies 10000^(-i/(dim/2-1))."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / max(half - 1, 1)))
    angle = torch.arange(length, dtype=torch.float)[:, None] * freq[None]
    table = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
    return F.pad(table, (0, dim % 2))


class LanguageModel(nn.Module):
    """Embedding -> [pre-norm residual sub-layers] -> norm -> unembedding. tokens `[B, T]` -> logits `[B, T, V]`.

    init "fork" (the paper's fork, default): embedding and every Linear weight in the model, mixers included,
    ~ N(0, 0.02²). init "mad" (upstream MAD): embedding ~ N(0, 0.02²), Linear weights keep their own init.
    Both zero every Linear bias.
    """

    def __init__(self, layers, vocab_size, d_model, norm="layernorm", init="fork"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init: got {init!r}; allowed: {', '.join(INITS)}")
        self.redraw_linear = init == "fork"
        self.token_embeds = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(Residual(BACKBONE_NORMS[norm](d_model), layer) for layer in layers)
        self.norm = BACKBONE_NORMS[norm](d_model)
        self.unembed = nn.Linear(d_model, vocab_size)
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            if self.redraw_linear:
                nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, tokens):
        x = self.token_embeds(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.unembed(self.norm(x))


class AutoEncoder(nn.Module):
    """MAD's compression model: encoder stack, pool the last position, then decode every position p from
    `code + pos(p)` with a fixed MLP (norm, Linear, GELU, norm, Linear, GELU) and a norm + unembedding.

    positions: "learned" (the paper's fork, default: one learned table added to the encoder input and to the
    decoder input) or "sincos" (upstream MAD: none in the encoder, fixed sinusoids in the decoder).
    MAD's init hook redraws every Linear weight ~ N(0, 0.02²) and zeroes every bias, the mixers' included.
    """

    def __init__(self, layers, vocab_size, d_model, seq_len, norm="layernorm", positions="learned"):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions: got {positions!r}; allowed: {', '.join(POSITIONS)}")
        self.positions = positions
        self.token_embeds = nn.Embedding(vocab_size, d_model)
        if positions == "learned":
            self.pos_embeds = nn.Embedding(seq_len, d_model)
        else:
            self.register_buffer("dec_positions", sincos_positions(seq_len, d_model), persistent=False)
        self.encoder = nn.ModuleList(Residual(BACKBONE_NORMS[norm](d_model), layer) for layer in layers)
        self.decoder = nn.Sequential(BACKBONE_NORMS[norm](d_model), nn.Linear(d_model, d_model), nn.GELU(),
                                     BACKBONE_NORMS[norm](d_model), nn.Linear(d_model, d_model), nn.GELU())
        self.unembed = nn.Sequential(BACKBONE_NORMS[norm](d_model), nn.Linear(d_model, vocab_size))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def _learned(self, rows, length):
        """The learned table's first `length` rows `[rows, length, D]`, looked up (not sliced) per batch row,
        so that a stacked twin of the table (statemix.stack) serves each run its own."""
        ids = torch.arange(length, device=self.pos_embeds.weight.device).expand(rows, length)
        return self.pos_embeds(ids)

    def encode(self, tokens):
        """tokens `[B, T]` -> code `[B, D]` (the last position's hidden state)."""
        x = self.token_embeds(tokens)
        if self.positions == "learned":
            x = x + self._learned(*tokens.shape)
        for layer in self.encoder:
            x = layer(x)
        return x[:, -1]

    def decode(self, code, length):
        """code `[B, D]` -> logits `[B, length, V]`."""
        pos = self._learned(code.shape[0], length) if self.positions == "learned" else self.dec_positions[:length]
        return self.unembed(self.decoder(code[:, None] + pos))

    def forward(self, tokens):
        return self.decode(self.encode(tokens), tokens.shape[1])


def build_model(arch, width, vocab_size, seq_len, d_model=128, n_layers=2, backbone="lm",
                channel_mixer="swiglu", backbone_norm="layernorm", init="fork", positions="learned",
                **mixer_options):
    """int64 tokens `[B, T]` -> logits `[B, T, V]`: `n_layers` blocks of [mixer, channel mixer] in a MAD backbone.

    backbone "lm" or "autoencoder" (compression); backbone_norm "layernorm" (MAD's CLI) or "rmsnorm" (MAD's
    class default); `init` applies to the language model, `positions` to the AutoEncoder (whose hook redraws
    every Linear weight under either init, as both MAD and the fork do).
    `mixer_options` go to the mixer's constructor under its own names (e.g. `norm`, `backend` for H-LRU).
    Bad names or values raise ValueError naming them.
    """
    for key, val, allowed in (("backbone", backbone, ("lm", "autoencoder")),
                              ("channel_mixer", channel_mixer, tuple(CHANNEL_MIXERS)),
                              ("backbone_norm", backbone_norm, tuple(BACKBONE_NORMS)), ("init", init, INITS),
                              ("positions", positions, POSITIONS)):
        if val not in allowed:
            raise ValueError(f"{key}: got {val!r}; allowed: {', '.join(allowed)}")
    check_positive(vocab_size=vocab_size, seq_len=seq_len, d_model=d_model, n_layers=n_layers)
    entry = registry[arch]
    layers = []
    for _ in range(n_layers):
        layers += [entry.build(d_model, width, **mixer_options), CHANNEL_MIXERS[channel_mixer](d_model)]
    if backbone == "lm":
        return LanguageModel(layers, vocab_size, d_model, backbone_norm, init)
    return AutoEncoder(layers, vocab_size, d_model, seq_len, backbone_norm, positions)
