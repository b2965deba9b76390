"""make_dataset: parameter checking, determinism across processes, defaults from tasks.md."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from statemix.io import sha256_array
from statemix.tasks import IGNORE, TASKS, make_dataset, resolve_params

SRC = str(Path(__file__).resolve().parents[2] / "src")

# tasks.md §0 / paper.md §3.1: (vocab, fed length, train, test, scored per test example)
MAD_DEFAULTS = {
    "in-context-recall": (16, 127, 12_800, 1_280, None),
    "noisy-in-context-recall": (32, 127, 12_800, 1_280, None),
    "fuzzy-in-context-recall": (16, 128, 12_800, 1_280, None),
    "selective-copying": (16, 256, 12_800, 1_280, 16),
    "compression": (16, 32, 12_800, 1_280, 32),
    "memorization": (256, 32, 256, 1_280, 16),
    "permutation": (120, 16, 100_000, 1_280, 16),
    "parity": (3, 256, 100_000, 1_280, 1),
    "modular-counting": (4, 256, 100_000, 1_280, 1),
    "lm": (256, 256, 9_088, 512, 256),  # not MAD: byte-level text, statemix.tasks.text
}


def test_every_task_has_defaults_listed():
    assert set(TASKS) == set(MAD_DEFAULTS)


@pytest.mark.parametrize("task", sorted(MAD_DEFAULTS))
def test_defaults(task):
    vocab, length, n_train, n_test, scored = MAD_DEFAULTS[task]
    spec = TASKS[task]
    assert spec.vocab_size(spec.defaults) == vocab
    assert spec.num_examples == {"train": n_train, "test": n_test}
    assert spec.backbone == ("autoencoder" if task == "compression" else "lm")
    x, y = make_dataset(task, n_test, 12345, "test")
    assert x.dtype == y.dtype == np.int64 and x.shape == y.shape == (n_test, length)
    assert x.min() >= 0 and x.max() < vocab and y[y != IGNORE].max() < vocab
    if scored is not None:
        assert ((y != IGNORE).sum(1) == scored).all()


def test_seeds_and_splits_give_different_data():
    a = make_dataset("compression", 64, 1, "train")[0]
    assert not np.array_equal(a, make_dataset("compression", 64, 2, "train")[0])
    assert not np.array_equal(a, make_dataset("compression", 64, 1, "test")[0])
    np.testing.assert_array_equal(a, make_dataset("compression", 64, 1, "train")[0])


def _hashes_in_subprocess(hash_seed):
    code = (
        "from statemix.tasks import TASKS, make_dataset\n"
        "from statemix.io import sha256_array\n"
        "for t in TASKS:\n"
        "    for s in ('train', 'test'):\n"
        "        x, y = make_dataset(t, 64, 3, s)\n"
        "        print(t, s, sha256_array(x), sha256_array(y))\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONHASHSEED": str(hash_seed)}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout


def test_identical_bytes_across_processes():
    here = "".join(
        f"{t} {s} {sha256_array(x)} {sha256_array(y)}\n"
        for t in TASKS for s in ("train", "test")
        for x, y in [make_dataset(t, 64, 3, s)]
    )
    assert _hashes_in_subprocess(1) == here
    assert _hashes_in_subprocess(2) == here


def test_param_overrides_are_typed():
    p = resolve_params("noisy-in-context-recall", frac_noise="0.4", vocab_size="48")
    assert p == dict(vocab_size=48, seq_len=128, noise_vocab_size=16, frac_noise=0.4)
    assert resolve_params("noisy-in-context-recall", frac_noise=0)["frac_noise"] == 0.0
    assert resolve_params("compression", vocab_size=np.int64(8))["vocab_size"] == 8


@pytest.mark.parametrize("call,words", [
    (lambda: make_dataset("copying", 8, 0, "train"), ["'copying'", "selective-copying"]),
    (lambda: make_dataset("compression", 8, 0, "valid"), ["'valid'", "train"]),
    (lambda: make_dataset("compression", 0, 0, "train"), ["num_examples", "0"]),
    (lambda: make_dataset("compression", 8, -1, "train"), ["seed", "-1"]),
    (lambda: make_dataset("compression", 8, 0, "train", vocab=4), ["'vocab'", "vocab_size"]),
    (lambda: make_dataset("compression", 8, 0, "train", vocab_size="big"), ["vocab_size", "'big'", "int"]),
    (lambda: make_dataset("compression", 8, 0, "train", vocab_size=1.5), ["vocab_size", "1.5"]),
    (lambda: make_dataset("selective-copying", 8, 0, "train", seq_len=33), ["seq_len", "33", "> 2*"]),
    (lambda: make_dataset("in-context-recall", 8, 0, "train", seq_len=127), ["seq_len", "127", "even"]),
    (lambda: make_dataset("noisy-in-context-recall", 8, 0, "train", frac_noise=1.0), ["frac_noise", "[0, 1)"]),
    (lambda: make_dataset("fuzzy-in-context-recall", 8, 0, "train", k_motif_size=8), ["vocab_size", "16"]),
    (lambda: make_dataset("permutation", 8, 0, "train", group="S6"), ["group", "'S6'", "S3 | S4 | S5"]),
    (lambda: make_dataset("parity", 8, 0, "train", test_min_len=10), ["test_min_len", "10", "max_len"]),
], ids=lambda c: c[0] if isinstance(c, list) else "")
def test_bad_arguments_name_key_value_and_allowed(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for word in words:
        assert word in str(err.value)


def test_generation_benchmark_writes_table(tmp_path):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_tasks.py"
    spec = importlib.util.spec_from_file_location("bench_tasks", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    bench.main(["--repeats", "1", "--out", str(tmp_path / "gen")])
    text = (tmp_path / "gen.md").read_text()
    assert all(f"| {t} | train |" in text and f"| {t} | test |" in text for t in TASKS)
    assert "CPU:" in text and (tmp_path / "gen.json").exists()
