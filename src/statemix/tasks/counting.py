"""Parity and modular counting with length extrapolation, tasks.md §2.2(b).

Tokens: pad ``0``, symbols ``1`` and ``2`` (the xLSTM / Grazzi et al. parity encoding). A
sequence has a uniform random length in ``[min_len, max_len]`` (train) or
``[test_min_len, test_max_len]`` (test) and is right-padded with 0 to the split's maximum
length. The only scored position is the last symbol, whose target is ``1 + (number of 2s mod
m)``: m = 2 for parity (answer 1 = even, 2 = odd), m = ``modulus`` for modular counting.
Test lengths start where train lengths end (40 -> 40..256 by default), so the test set
measures length extrapolation.

Deliberate differences from the reference setup: Grazzi et al. stream fresh sequences (5.12M
for parity); here the data is a fixed set, with 100,000 training sequences by default.
"Modular counting" is our name for the same format with m > 2 (counting mod 3 is the case
tasks.md singles out); answers use ids ``1..m``, so the vocabulary is ``max(3, m + 1)``.
"""
from __future__ import annotations

import numpy as np

from statemix.tasks.common import IGNORE, require


def vocab_size(p: dict) -> int:
    """Pad, the two symbols, and answer ids 1..m."""
    return max(3, p.get("modulus", 2) + 1)


def check(p: dict) -> None:
    """Validate parity / modular counting parameters."""
    lo, hi, tlo, thi = p["min_len"], p["max_len"], p["test_min_len"], p["test_max_len"]
    require(lo >= 1, "min_len", lo, "an int >= 1")
    require(hi >= lo, "max_len", hi, f"an int >= min_len = {lo}")
    require(tlo >= hi, "test_min_len", tlo, f"an int >= max_len = {hi} (test extrapolates)")
    require(thi >= tlo, "test_max_len", thi, f"an int >= test_min_len = {tlo}")
    if "modulus" in p:
        require(p["modulus"] >= 2, "modulus", p["modulus"], "an int >= 2")


def _counting(rng, n, split, min_len, max_len, test_min_len, test_max_len, modulus):
    lo, hi = (min_len, max_len) if split == "train" else (test_min_len, test_max_len)
    lengths = rng.integers(lo, hi + 1, size=n)
    inputs = rng.integers(1, 3, size=(n, hi))
    inputs[np.arange(hi)[None, :] >= lengths[:, None]] = 0
    rows = np.arange(n)
    count = np.cumsum(inputs == 2, axis=1)[rows, lengths - 1]
    targets = np.full((n, hi), IGNORE, dtype=np.int64)
    targets[rows, lengths - 1] = 1 + count % modulus
    return inputs, targets


def generate_parity(rng, n, split, min_len, max_len, test_min_len, test_max_len):
    """Parity: ``(inputs, targets)`` int64 ``[n, max length of the split]``."""
    return _counting(rng, n, split, min_len, max_len, test_min_len, test_max_len, 2)


def generate_modular_counting(rng, n, split, min_len, max_len, test_min_len, test_max_len,
                              modulus):
    """Count of 2s mod ``modulus``: ``(inputs, targets)`` int64 ``[n, max length of the split]``."""
    return _counting(rng, n, split, min_len, max_len, test_min_len, test_max_len, modulus)
