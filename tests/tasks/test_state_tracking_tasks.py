"""Permutation word problems and parity / modular counting: solvers, disjointness, lengths."""
from itertools import permutations

import numpy as np
import pytest

from statemix.tasks import IGNORE, make_dataset
from statemix.tasks.permutation import elements


def compose(a, b):
    """(a ∘ b)(i) = a(b(i)) on one-line-notation tuples."""
    return tuple(a[i] for i in b)


@pytest.mark.parametrize("group,n", [("S3", 3), ("S4", 4), ("S5", 5)])
def test_permutation_solver(group, n):
    perms = list(permutations(range(n)))
    index = {p: i for i, p in enumerate(perms)}
    assert elements(n).tolist() == [list(p) for p in perms]
    for split in ("train", "test"):
        x, y = make_dataset("permutation", 200, 11, split, group=group, seq_len=24)
        for row, target in zip(x, y):
            acc = tuple(range(n))
            for t, tok in enumerate(row):
                acc = compose(acc, perms[tok])
                assert target[t] == index[acc]


def _rows(a):
    return {r.tobytes() for r in a}


def test_permutation_splits_are_disjoint_and_unique():
    train, _ = make_dataset("permutation", 20_000, 1, "train", group="S3", seq_len=7)
    test, _ = make_dataset("permutation", 2_000, 1, "test", group="S3", seq_len=7)
    other, _ = make_dataset("permutation", 2_000, 2, "test", group="S3", seq_len=7)
    assert len(_rows(train)) == 20_000 and len(_rows(test)) == 2_000
    assert not _rows(train) & _rows(test) and not _rows(train) & _rows(other)
    assert len(np.unique(train)) == 6 and abs(train.mean() - 2.5) < 0.05


def test_permutation_defaults_disjoint():
    train, ytr = make_dataset("permutation", 100_000, 12345, "train")
    test, yte = make_dataset("permutation", 1_280, 12345, "test")
    assert train.shape == (100_000, 16) and test.shape == (1_280, 16)
    assert not _rows(train) & _rows(test)
    assert (ytr != IGNORE).all() and (yte != IGNORE).all() and ytr.max() == 119


def test_permutation_too_small_space_is_refused():
    with pytest.raises(ValueError, match="seq_len"):
        make_dataset("permutation", 100, 0, "train", group="S3", seq_len=2)


def solve_counting(x, modulus):
    preds = np.full(x.shape, IGNORE)
    for b, row in enumerate(x):
        length = len(row) if (row != 0).all() else list(row).index(0)
        assert (row[:length] > 0).all() and (row[length:] == 0).all()
        preds[b, length - 1] = 1 + list(row[:length]).count(2) % modulus
    return preds


@pytest.mark.parametrize("task,modulus", [("parity", 2), ("modular-counting", 3)])
def test_counting_solver_and_length_extrapolation(task, modulus):
    x, y = make_dataset(task, 2_000, 4, "train")
    xt, yt = make_dataset(task, 1_000, 4, "test")
    np.testing.assert_array_equal(solve_counting(x, modulus), y)
    np.testing.assert_array_equal(solve_counting(xt, modulus), yt)
    train_len, test_len = (x > 0).sum(1), (xt > 0).sum(1)
    assert x.shape[1] == 40 and xt.shape[1] == 256
    assert train_len.min() == 3 and train_len.max() == 40
    assert test_len.min() >= 40 and test_len.max() > 200
    assert ((y != IGNORE).sum(1) == 1).all() and ((yt != IGNORE).sum(1) == 1).all()
    answers = yt[yt != IGNORE]
    assert set(answers) == set(range(1, modulus + 1))


def test_modular_counting_other_modulus():
    x, y = make_dataset("modular-counting", 500, 0, "test", modulus=5, test_max_len=60)
    np.testing.assert_array_equal(solve_counting(x, 5), y)
