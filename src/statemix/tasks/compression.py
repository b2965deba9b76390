"""Compression (MAD), tasks.md §1.6: reconstruct the whole input from its final state.

Vocabulary with V = vocab_size: compression token ``V-1``. Inputs: L-1 tokens i.i.d. from
``[0, V-1)``, then the compression token. Targets: the inputs themselves, all L positions
scored. Meant for the AutoEncoder backbone (pool the last position, decode every position).
Train and test share the format. MAD's noise option is not offered: upstream it returns the
inputs as targets, so its noise positions are never ignored.
"""
from __future__ import annotations

import numpy as np

from statemix.tasks.common import require


def check(p: dict) -> None:
    """Validate compression parameters."""
    require(p["vocab_size"] >= 2, "vocab_size", p["vocab_size"], "an int >= 2")
    require(p["seq_len"] >= 2, "seq_len", p["seq_len"], "an int >= 2")


def generate_compression(rng, n, split, vocab_size, seq_len):
    """Compression: ``(inputs, targets)`` int64 ``[n, seq_len]``, targets == inputs."""
    inputs = np.empty((n, seq_len), dtype=np.int64)
    inputs[:, :-1] = rng.integers(0, vocab_size - 1, size=(n, seq_len - 1))
    inputs[:, -1] = vocab_size - 1
    return inputs, inputs.copy()
