"""Selective copying (MAD), tasks.md §1.5.

Vocabulary with V = vocab_size: copy token ``V-1``, blank ``V-2``, content ``[0, V-2)``.
N = num_tokens_to_copy content tokens are drawn i.i.d.; B = L - 2N - 1 blanks are inserted
among them, each before a content token chosen uniformly (so no blank follows the last
content token); then the copy token and N blanks. Length L, no shift. Targets: -100 on the
first L - N positions, the N content tokens in order on the last N. Train and test share the
format; N positions are scored.

Deliberate difference from MAD: MAD draws the blank positions from numpy's global RNG; we
draw the number of blanks before each content token (a multinomial, the same distribution)
from the seeded Generator. ``num_tokens_to_copy`` is honoured (MAD issue #7 dropped it).
"""
from __future__ import annotations

import numpy as np

from statemix.tasks.common import IGNORE, require


def check(p: dict) -> None:
    """Validate selective copying parameters."""
    V, L, N = p["vocab_size"], p["seq_len"], p["num_tokens_to_copy"]
    require(V >= 3, "vocab_size", V, "an int >= 3 (blank and copy tokens plus content)")
    require(N >= 1, "num_tokens_to_copy", N, "an int >= 1")
    require(L > 2 * N + 1, "seq_len", L, f"an int > 2*num_tokens_to_copy + 1 = {2 * N + 1}")


def generate_selective_copying(rng, n, split, vocab_size, seq_len, num_tokens_to_copy):
    """Selective copying: ``(inputs, targets)`` int64 ``[n, seq_len]``."""
    N, L = num_tokens_to_copy, seq_len
    blank, copy = vocab_size - 2, vocab_size - 1
    content = rng.integers(0, vocab_size - 2, size=(n, N))
    blanks_before = rng.multinomial(L - 2 * N - 1, np.full(N, 1.0 / N), size=n)
    pos = np.arange(N)[None, :] + np.cumsum(blanks_before, axis=1)
    inputs = np.full((n, L), blank, dtype=np.int64)
    np.put_along_axis(inputs, pos, content, axis=1)
    inputs[:, L - N - 1] = copy
    targets = np.full((n, L), IGNORE, dtype=np.int64)
    targets[:, L - N:] = content
    return inputs, targets
