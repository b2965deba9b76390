"""In-context recall and noisy in-context recall (MAD, multi-query), tasks.md §1.2-§1.3.

Vocabulary with V = vocab_size and noise vocabulary size S: keys ``[0, (V-S)//2)``, values
``[(V-S)//2, V-S)``, noise ``[V-S, V)``. A sequence is L/2 two-token slots: L/2 - 1 body
slots, each a (key, value) pair or, with probability ``frac_noise``, two noise tokens, then a
final probe (a key already shown, and its value). Within a sequence each key keeps the value
it got at its first appearance; the map is redrawn per sequence. Inputs are the first L-1
tokens (127 at L=128).

Targets: train = next token at every position (noise and first occurrences included);
test = the value at every key that appeared in an earlier slot, plus the final probe value,
-100 elsewhere (56 of 127 positions at the clean defaults).

Deliberate differences from MAD: the slot guaranteed to be a real pair is drawn among the
L/2 - 1 body slots (MAD draws it among L/2 slots, so with probability 2/L it guarantees
nothing); draws come from the seeded Generator in vectorised order, not per instance.
"""
from __future__ import annotations

import numpy as np

from statemix.tasks.common import IGNORE, require


def check(p: dict) -> None:
    """Validate in-context recall parameters."""
    L, V, S = p["seq_len"], p["vocab_size"], p["noise_vocab_size"]
    require(L >= 4 and L % 2 == 0, "seq_len", L, "an even int >= 4")
    require(0 <= S, "noise_vocab_size", S, "an int >= 0")
    require(V - S >= 2, "vocab_size", V, f"an int >= noise_vocab_size + 2 = {S + 2}")
    f = p["frac_noise"]
    require(0.0 <= f < 1.0, "frac_noise", f, "a float in [0, 1)")
    require(f == 0.0 or S > 0, "noise_vocab_size", S, "> 0 when frac_noise > 0")


def generate_in_context_recall(rng, n, split, vocab_size, seq_len, noise_vocab_size,
                               frac_noise):
    """Multi-query recall: ``(inputs, targets)`` int64 ``[n, seq_len - 1]``."""
    ns = vocab_size - noise_vocab_size
    nk = ns // 2
    body = seq_len // 2 - 1
    rows = np.arange(n)
    keys = rng.integers(0, nk, size=(n, body))
    table = rng.integers(nk, ns, size=(n, nk))  # value each key gets at its first appearance
    vals = np.take_along_axis(table, keys, axis=1)
    noise = np.zeros((n, body), dtype=bool)
    if frac_noise > 0:
        noise = rng.random((n, body)) < frac_noise
        noise[rows, rng.integers(0, body, size=n)] = False
        noise_tok = rng.integers(ns, vocab_size, size=(n, body, 2))
        keys = np.where(noise, noise_tok[..., 0], keys)
        vals = np.where(noise, noise_tok[..., 1], vals)

    seen = np.zeros((n, nk), dtype=bool)
    repeat = np.zeros((n, body), dtype=bool)
    for j in range(body):
        real = ~noise[:, j]
        k = np.where(real, keys[:, j], 0)
        repeat[:, j] = real & seen[rows, k]
        seen[rows[real], k[real]] = True
    score = np.where(seen, rng.random((n, nk)), -1.0)  # uniform over distinct shown keys
    probe = score.argmax(axis=1)

    raw = np.empty((n, seq_len), dtype=np.int64)
    raw[:, 0:-2:2], raw[:, 1:-2:2] = keys, vals
    raw[:, -2], raw[:, -1] = probe, table[rows, probe]
    inputs = raw[:, :-1]
    if split == "train":
        return inputs, raw[:, 1:].copy()
    targets = np.full((n, seq_len - 1), IGNORE, dtype=np.int64)
    targets[:, 0:-1:2] = np.where(repeat, vals, IGNORE)
    targets[:, -1] = raw[:, -1]
    return inputs, targets


generate_noisy_in_context_recall = generate_in_context_recall
