"""Recall tasks: an independent rule-based solver must score 100% on every scored position."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemix.tasks import IGNORE, TASKS, make_dataset


def solve_pairs(inputs, num_keys, first_noise):
    """Walk the (key, value) slots; at a key seen in an earlier slot, predict its value."""
    preds = np.full(inputs.shape, IGNORE)
    for b, row in enumerate(inputs):
        memory = {}
        for i in range(0, len(row), 2):
            key = row[i]
            if key >= first_noise:
                assert row[i + 1] >= first_noise, "noise comes in whole slots"
                continue
            assert key < num_keys
            if key in memory:
                preds[b, i] = memory[key]
                if i + 1 < len(row):
                    assert row[i + 1] == memory[key], "a key keeps its value within a sequence"
            elif i + 1 < len(row):
                memory[key] = row[i + 1]
    return preds


def solve_fuzzy(inputs, vocab_size):
    """Split each sequence into key runs and value runs; recall the value of a repeated key."""
    pad = vocab_size - 1
    num_keys = pad // 2
    preds = np.full(inputs.shape, IGNORE)
    for b, row in enumerate(inputs):
        T, i, memory = len(row), 0, {}
        while i < T and row[i] == pad:
            i += 1
        while i < T:
            j = i
            while j < T and row[j] < num_keys:
                j += 1
            m = j
            while m < T and num_keys <= row[m] < pad:
                m += 1
            assert j > i and (m > j or m == T), "keys and values alternate after the padding"
            key, value = tuple(row[i:j]), tuple(row[j:m])
            if key in memory:
                assert memory[key][: len(value)] == value
                preds[b, j - 1: j - 1 + len(memory[key])] = memory[key]
            else:
                memory[key] = value
            i = m
    return preds


def _pair_solver(task, params):
    ns = params["vocab_size"] - params["noise_vocab_size"]
    return lambda x: solve_pairs(x, ns // 2, ns)


CASES = [
    ("in-context-recall", {}),
    ("in-context-recall", dict(vocab_size=32, seq_len=64)),
    ("noisy-in-context-recall", {}),
    ("noisy-in-context-recall", dict(frac_noise=0.8, seq_len=32)),
    ("fuzzy-in-context-recall", {}),
    ("fuzzy-in-context-recall", dict(vocab_size=24, seq_len=64, k_motif_size=2)),
    ("fuzzy-in-context-recall", dict(vocab_size=64, seq_len=256)),
]


def _solver(task, overrides):
    params = {**TASKS[task].defaults, **overrides}
    if task.startswith("fuzzy"):
        return lambda x: solve_fuzzy(x, params["vocab_size"])
    return _pair_solver(task, params)


@pytest.mark.parametrize("task,overrides", CASES, ids=lambda c: str(c))
def test_solver_scores_every_test_target(task, overrides):
    x, y = make_dataset(task, 300, 7, "test", **overrides)
    preds = _solver(task, overrides)(x)
    np.testing.assert_array_equal(preds, y)
    assert (y[:, -1] != IGNORE).all(), "the final probe is always scored"


@pytest.mark.parametrize("task,overrides", CASES, ids=lambda c: str(c))
def test_train_targets_are_next_tokens(task, overrides):
    x, y = make_dataset(task, 300, 7, "train", **overrides)
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    preds = _solver(task, overrides)(x)
    recalled = preds != IGNORE
    assert recalled[:, -1].all()
    np.testing.assert_array_equal(preds[recalled], y[recalled])


def test_scored_positions_at_defaults_match_tasks_md():
    _, y = make_dataset("in-context-recall", 1280, 12345, "test")
    scored = (y != IGNORE).sum(1)
    assert y.shape == (1280, 127) and np.median(scored) == 56 and set(scored) <= {56, 57, 58}
    _, y = make_dataset("noisy-in-context-recall", 1280, 12345, "test")
    scored = (y != IGNORE).sum(1)
    expected = 1 + (1 + 62 * 0.8) - 8  # probe + repeats: real body pairs minus distinct keys
    assert abs(scored.mean() - expected) < 0.5 and scored.min() <= 46 <= scored.max()
    x, y = make_dataset("fuzzy-in-context-recall", 1280, 12345, "test")
    scored = (y != IGNORE).sum(1)
    assert x.shape == (1280, 128) and scored.min() >= 1 and np.median(scored) <= 4


def test_fuzzy_test_keys_have_full_length():
    x, _ = make_dataset("fuzzy-in-context-recall", 200, 3, "test")
    for row in x:
        body = row[row != 15]
        is_key = body < 7
        starts = np.flatnonzero(is_key & ~np.r_[False, is_key[:-1]])
        ends = np.flatnonzero(is_key & ~np.r_[is_key[1:], False])
        assert ((ends - starts + 1) == 3).all()


@settings(max_examples=25, deadline=None)
@given(vocab=st.integers(2, 40), noise=st.integers(0, 8), frac=st.sampled_from([0.0, 0.3, 0.9]),
       pairs=st.integers(2, 40), split=st.sampled_from(["train", "test"]), seed=st.integers(0, 99))
def test_recall_solver_over_random_settings(vocab, noise, frac, pairs, split, seed):
    params = dict(vocab_size=vocab + noise, seq_len=2 * pairs, noise_vocab_size=noise,
                  frac_noise=frac if noise else 0.0)
    x, y = make_dataset("noisy-in-context-recall", 20, seed, split, **params)
    preds = _pair_solver("noisy-in-context-recall", params)(x)
    if split == "test":
        np.testing.assert_array_equal(preds, y)
    else:
        np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
        np.testing.assert_array_equal(preds[preds != IGNORE], y[preds != IGNORE])


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 3), m=st.integers(1, 3), extra=st.integers(0, 6), slack=st.integers(1, 60),
       split=st.sampled_from(["train", "test"]), seed=st.integers(0, 99))
def test_fuzzy_solver_over_random_settings(k, m, extra, slack, split, seed):
    vocab = 2 * max(k, m) + 1 + extra
    params = dict(vocab_size=vocab, seq_len=2 * (k + m) + slack, k_motif_size=k, v_motif_size=m)
    x, y = make_dataset("fuzzy-in-context-recall", 20, seed, split, **params)
    preds = solve_fuzzy(x, vocab)
    assert x.shape == (20, params["seq_len"])
    if split == "test":
        np.testing.assert_array_equal(preds, y)
    else:
        np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
        np.testing.assert_array_equal(preds[preds != IGNORE], y[preds != IGNORE])
