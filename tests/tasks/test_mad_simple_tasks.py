"""Selective copying, compression, memorization: rule-based solvers and MAD's layouts."""
from itertools import permutations

import numpy as np
import pytest

from statemix.tasks import IGNORE, make_dataset
from statemix.tasks.memorization import kv_map


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("params", [{}, dict(vocab_size=64, seq_len=100, num_tokens_to_copy=32)],
                         ids=["default", "V64-L100-N32"])
def test_selective_copying_solver(split, params):
    x, y = make_dataset("selective-copying", 400, 5, split, **params)
    V, L = params.get("vocab_size", 16), params.get("seq_len", 256)
    N = params.get("num_tokens_to_copy", 16)
    assert x.shape == (400, L)
    for row, target in zip(x, y):
        go = list(row).index(V - 1)
        assert go == L - N - 1 and (row[go + 1:] == V - 2).all()
        content = [t for t in row[:go] if t != V - 2]
        assert len(content) == N and row[go - 1] != V - 2, "the last content token precedes go"
        expected = np.full(L, IGNORE)
        expected[L - N:] = content
        np.testing.assert_array_equal(target, expected)


def test_selective_copying_blanks_are_spread():
    x, _ = make_dataset("selective-copying", 2000, 1, "train")
    first = (x != 14).argmax(1)
    assert first.mean() > 5 and (first == 0).mean() < 0.2


@pytest.mark.parametrize("split", ["train", "test"])
def test_compression_targets_are_inputs(split):
    x, y = make_dataset("compression", 500, 2, split, vocab_size=32, seq_len=64)
    assert (x[:, -1] == 31).all() and (x[:, :-1] < 31).all()
    np.testing.assert_array_equal(y, x)
    assert len(np.unique(x[:, :-1])) == 31


def test_memorization_map_matches_mad_construction():
    rng = np.random.default_rng(12345)
    keys = list(permutations(range(127), 1))
    values = list(permutations(range(127, 255), 1))
    rng.shuffle(keys)
    rng.shuffle(values)
    mad = {k[0]: v[0] for k, v in zip(keys, values)}
    table = kv_map(256, 12345)
    assert {k: int(table[k]) for k in range(127)} == mad


def test_memorization_solver_learns_map_from_train_and_answers_test():
    x, y = make_dataset("memorization", 256, 12345, "train")
    learned = {}
    for row, target in zip(x, y):
        for i in range(0, 32, 2):
            assert row[i + 1] == 255 and target[i] == IGNORE
            assert learned.setdefault(row[i], target[i + 1]) == target[i + 1]
    assert len(learned) == 127, "256 training sequences show every key"
    xt, yt = make_dataset("memorization", 1280, 12345, "test")
    preds = np.full(xt.shape, IGNORE)
    for b, row in enumerate(xt):
        for i in range(0, 32, 2):
            preds[b, i + 1] = learned[row[i]]
    np.testing.assert_array_equal(preds, yt)
    assert not (xt[:, None, :] == x[None, :, :]).all(-1).any(), "fresh test draws"
