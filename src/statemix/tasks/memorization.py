"""Memorization (MAD), tasks.md §1.7: a fixed key->value map learnt in the weights.

Vocabulary with V = vocab_size: insert token ``V-1``; keys ``[0, (V-1)//2)``; values
``[(V-1)//2, V-1)``. The map is built once from ``default_rng(kv_map_seed)`` exactly as MAD
does it (shuffle the keys, then the values, zip; one value stays unused) and is shared by
train and test. A sequence is L/2 pairs ``[key, insert]`` with keys drawn uniformly with
replacement; the target is -100 at the key and the key's value at the insert token. No
shift; L/2 positions are scored. Noise (off in MAD's settings) is not offered.
"""
from __future__ import annotations

import numpy as np

from statemix.tasks.common import IGNORE, require


def check(p: dict) -> None:
    """Validate memorization parameters."""
    V, L = p["vocab_size"], p["seq_len"]
    require(V >= 4, "vocab_size", V, "an int >= 4")
    require(L >= 2 and L % 2 == 0, "seq_len", L, "an even int >= 2")
    require(p["kv_map_seed"] >= 0, "kv_map_seed", p["kv_map_seed"], "an int >= 0")


def kv_map(vocab_size: int, kv_map_seed: int) -> np.ndarray:
    """The fixed map as an array: ``value = table[key]`` for key in ``[0, (V-1)//2)``."""
    ns = vocab_size - 1
    map_rng = np.random.default_rng(kv_map_seed)
    keys, values = np.arange(ns // 2), np.arange(ns // 2, ns)
    map_rng.shuffle(keys)
    map_rng.shuffle(values)
    table = np.empty(ns // 2, dtype=np.int64)
    table[keys] = values[: ns // 2]
    return table


def generate_memorization(rng, n, split, vocab_size, seq_len, kv_map_seed):
    """Memorization: ``(inputs, targets)`` int64 ``[n, seq_len]``."""
    table = kv_map(vocab_size, kv_map_seed)
    keys = rng.integers(0, len(table), size=(n, seq_len // 2))
    inputs = np.empty((n, seq_len), dtype=np.int64)
    inputs[:, 0::2], inputs[:, 1::2] = keys, vocab_size - 1
    targets = np.full((n, seq_len), IGNORE, dtype=np.int64)
    targets[:, 1::2] = table[keys]
    return inputs, targets
