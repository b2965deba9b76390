"""Fuzzy in-context recall (MAD, multi-query), tasks.md §1.4.

Vocabulary with V = vocab_size: pad ``V-1``; keys ``[0, (V-1)//2)``; values
``[(V-1)//2, V-1)``. A key is an ordered tuple of 1..k_motif_size distinct key tokens, a
value an ordered tuple of 1..v_motif_size distinct value tokens (each tuple uniform among
those of its length). Train keys have a uniform length in {1..k_motif_size}; test keys always
have the full length. Value lengths are always uniform in {1..v_motif_size}.

A probe pair is drawn first. The body grows pair by pair while shorter than
``L - |probe| - (k_motif_size + v_motif_size)``; once the body length reaches a random
``probe_idx`` in ``[0, L - 2|probe|)`` the probe is inserted as the next pair. A drawn key
equal to the probe key takes the probe value (and counts as the probe); other keys keep the
value of their first appearance. Then the probe is repeated, the sequence is left-padded to
L+1 tokens and shifted: inputs are exactly L tokens.

Targets: train = next token everywhere (pads included); test = the value tokens of every key
shown before, plus the final probe value, -100 elsewhere (usually only the 1-3 probe value
tokens at the defaults).

Deliberate differences from MAD: MAD's body loop can end before reaching ``probe_idx``, so
a few sequences never show the probe before querying it (an unanswerable scored query); we
also insert the probe once one more maximal pair could end the body. Draws are vectorised
over examples (one slot at a time) from the seeded Generator; noise (off in MAD's fuzzy
settings) and single-query mode are not offered.
"""
from __future__ import annotations

from itertools import permutations

import numpy as np

from statemix.tasks.common import IGNORE, require, write_tuples


def check(p: dict) -> None:
    """Validate fuzzy recall parameters."""
    V, L, K, M = p["vocab_size"], p["seq_len"], p["k_motif_size"], p["v_motif_size"]
    require(K >= 1, "k_motif_size", K, "an int >= 1")
    require(M >= 1, "v_motif_size", M, "an int >= 1")
    nk, nv = (V - 1) // 2, (V - 1) - (V - 1) // 2
    require(nk >= K and nv >= M, "vocab_size", V,
            f"an int with (V-1)//2 >= k_motif_size and the rest >= v_motif_size, "
            f"i.e. >= {max(2 * K, 2 * M - 1) + 1}")
    require(L > 2 * (K + M), "seq_len", L, f"an int > 2*(k_motif_size+v_motif_size) = {2 * (K + M)}")


def _tuples(vocab: np.ndarray, max_len: int):
    """All ordered tuples of 1..max_len distinct tokens: (-1 padded table, offset per length)."""
    table, offsets = [], [0]
    for s in range(1, max_len + 1):
        perms = list(permutations(vocab.tolist(), s))
        table += [list(t) + [-1] * (max_len - s) for t in perms]
        offsets.append(offsets[-1] + len(perms))
    return np.array(table, dtype=np.int64), np.array(offsets)


def _draw(rng, offsets, sizes):
    """A uniform tuple id of the given length(s)."""
    return offsets[sizes - 1] + rng.integers(0, offsets[sizes] - offsets[sizes - 1])


def _first_slot(keys: np.ndarray) -> np.ndarray:
    """For each ``[n, S]`` entry, the first slot of its row holding the same key."""
    order = np.argsort(keys, axis=1, kind="stable")
    ranked = np.take_along_axis(keys, order, axis=1)
    starts = np.ones(ranked.shape, dtype=bool)
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    pos = np.maximum.accumulate(np.where(starts, np.arange(keys.shape[1]), 0), axis=1)
    first = np.empty_like(order)
    np.put_along_axis(first, order, np.take_along_axis(order, pos, axis=1), axis=1)
    return first


def generate_fuzzy_in_context_recall(rng, n, split, vocab_size, seq_len, k_motif_size,
                                     v_motif_size):
    """Fuzzy recall: ``(inputs, targets)`` int64 ``[n, seq_len]``."""
    L, K, M = seq_len, k_motif_size, v_motif_size
    pad = vocab_size - 1
    nk = pad // 2
    ktab, koff = _tuples(np.arange(nk), K)
    vtab, voff = _tuples(np.arange(nk, pad), M)
    klen, vlen = (ktab >= 0).sum(1), (vtab >= 0).sum(1)
    rows = np.arange(n)

    def key_sizes(shape):
        return rng.integers(1, K + 1, size=shape) if split == "train" else np.full(shape, K)

    pk = _draw(rng, koff, key_sizes(n))
    pv = _draw(rng, voff, rng.integers(1, M + 1, size=n))
    plen = klen[pk] + vlen[pv]
    probe_idx = rng.integers(0, L - 2 * plen)
    bound = L - plen - (K + M)

    slots = L // 2 + 2  # each body pair has >= 2 tokens, plus the probe's own slot
    sk = _draw(rng, koff, key_sizes((n, slots)))
    sv = _draw(rng, voff, rng.integers(1, M + 1, size=(n, slots)))

    first = _first_slot(sk)  # per example, keys are tracked by the slot of their first draw
    width = L + 1
    buf = np.full((n, width), pad, dtype=np.int64)
    tgt = np.full((n, width), IGNORE, dtype=np.int64)
    length = np.zeros(n, dtype=np.int64)
    added = np.zeros(n, dtype=bool)  # the probe pair has been shown
    value_of = np.full((n, slots), -1, dtype=np.int64)
    for j in range(slots):
        active = length < bound
        if not active.any():
            break
        insert = active & ~added & ((length >= probe_idx) | (length + K + M >= bound))
        r = rows[insert]
        write_tuples(buf, r, length[r], ktab, pk[r])
        write_tuples(buf, r, length[r] + klen[pk[r]], vtab, pv[r])
        length[r] += plen[r]

        r = rows[active & ~insert]
        k, slot = sk[r, j], first[r, j]
        is_probe = k == pk[r]
        known = np.where(is_probe, np.where(added[r], pv[r], -1), value_of[r, slot])
        v = np.where(is_probe, pv[r], np.where(known >= 0, known, sv[r, j]))
        write_tuples(buf, r, length[r], ktab, k)
        vstart = length[r] + klen[k]
        write_tuples(buf, r, vstart, vtab, v)
        shown = known >= 0
        write_tuples(tgt, r[shown], vstart[shown], vtab, v[shown])
        value_of[r[~is_probe], slot[~is_probe]] = v[~is_probe]
        added |= insert
        added[r] |= is_probe
        length[r] += klen[k] + vlen[v]

    write_tuples(buf, rows, length, ktab, pk)
    write_tuples(buf, rows, length + klen[pk], vtab, pv)
    write_tuples(tgt, rows, length + klen[pk], vtab, pv)
    length += plen

    src = np.arange(width)[None, :] - (width - length)[:, None]  # left-pad by a right shift
    inside = src >= 0
    src = np.where(inside, src, 0)
    seq = np.where(inside, np.take_along_axis(buf, src, axis=1), pad)
    if split == "train":
        return seq[:, :-1], seq[:, 1:].copy()
    tgt = np.where(inside, np.take_along_axis(tgt, src, axis=1), IGNORE)
    return seq[:, :-1], tgt[:, 1:]
