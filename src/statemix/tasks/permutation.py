"""Permutation composition (word problem) over S_n, paper.md §3.1 and tasks.md §2.2(a).

Tokens are the n! elements of S_n, numbered in lexicographic order of their one-line
notation (token 0 is the identity). Inputs are uniformly random tokens; the target at every
position t is the prefix product ``g_0 ∘ g_1 ∘ ... ∘ g_t`` with ``(a ∘ b)(i) = a(b(i))``.
All positions are scored, train and test alike.

Train and test are disjoint by construction, and each split holds no duplicate sequence
(the fork draws unique sequences for the same reason). The split a sequence belongs to is a
fixed hash of its tokens: one sequence in ``TEST_SHARE`` is a test sequence, the rest are
train sequences. So any train set and any test set are disjoint, whatever their seeds and
sizes, and each split is uniform over its part of the sequence space.
"""
from __future__ import annotations

import math
from functools import lru_cache
from itertools import permutations

import numpy as np

from statemix.tasks.common import require

GROUPS = ("S3", "S4", "S5")
TEST_SHARE = 8
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def degree(group: str) -> int:
    """n for the group name 'Sn'."""
    return int(group[1:])


def vocab_size(p: dict) -> int:
    """|S_n| = n!: one token per group element."""
    return math.factorial(degree(p["group"]))


def check(p: dict) -> None:
    """Validate permutation task parameters."""
    require(p["group"] in GROUPS, "group", p["group"], " | ".join(GROUPS))
    require(p["seq_len"] >= 1, "seq_len", p["seq_len"], "an int >= 1")


@lru_cache(maxsize=None)
def elements(n: int) -> np.ndarray:
    """All permutations of ``range(n)`` in lexicographic order, ``[n!, n]``."""
    return np.array(list(permutations(range(n))), dtype=np.int64)


@lru_cache(maxsize=None)
def cayley(n: int) -> np.ndarray:
    """``table[a, b]`` = token of ``a ∘ b``, ``[n!, n!]``."""
    el = elements(n)
    composed = np.take_along_axis(el[:, None, :].repeat(len(el), 1),
                                  el[None, :, :].repeat(len(el), 0), axis=2)
    weights = n ** np.arange(n - 1, -1, -1)  # base-n code: lexicographic = numeric order
    return np.searchsorted(el @ weights, composed @ weights)


def prefix_products(tokens: np.ndarray, n: int) -> np.ndarray:
    """Running products of a ``[B, T]`` token array, ``[B, T]``."""
    table = cayley(n)
    out = np.empty_like(tokens)
    acc = tokens[:, 0]
    out[:, 0] = acc
    for t in range(1, tokens.shape[1]):
        acc = table[acc, tokens[:, t]]
        out[:, t] = acc
    return out


def is_test(seqs: np.ndarray) -> np.ndarray:
    """Which sequences belong to the test split: a fixed 64-bit hash of the tokens."""
    h = np.full(len(seqs), _MIX[0], dtype=np.uint64)
    for t in range(seqs.shape[1]):
        h = (h ^ seqs[:, t].astype(np.uint64)) * _MIX[1]
        h ^= h >> np.uint64(31)
    h = (h ^ (h >> np.uint64(29))) * _MIX[2]
    return (h >> np.uint64(40)) % np.uint64(TEST_SHARE) == 0


def _unique_in_split(rng, n, split, size, seq_len):
    want_test = split == "test"
    share = 1 / TEST_SHARE if want_test else 1 - 1 / TEST_SHARE
    space = size ** seq_len
    capacity = space // TEST_SHARE if want_test else space - space // TEST_SHARE
    require(2 * n <= capacity, "seq_len", seq_len,
            f"a length whose {split} share of the {space} sequences holds at least "
            f"2 * num_examples = {2 * n}")
    kept = np.empty((0, seq_len), dtype=np.int64)
    while len(kept) < n:
        draw = rng.integers(0, size, size=(int((n - len(kept)) / share * 1.1) + 16, seq_len))
        pool = np.concatenate([kept, draw[is_test(draw) == want_test]])
        _, first = np.unique(pool, axis=0, return_index=True)
        kept = pool[np.sort(first)]
    return kept[:n]


def generate_permutation(rng, n, split, group, seq_len):
    """S_n word problem: ``(inputs, targets)`` int64 ``[n, seq_len]``, all positions scored."""
    deg = degree(group)
    inputs = _unique_in_split(rng, n, split, math.factorial(deg), seq_len)
    return inputs, prefix_products(inputs, deg)
