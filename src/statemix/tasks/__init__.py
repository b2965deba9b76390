"""Tasks as deterministic datasets: the six MAD tasks, S_n word problems, counting, byte-level text (lm).

``make_dataset(task, num_examples, seed, split, **params)`` returns ``(inputs, targets)``,
both int64 ``[num_examples, T]``; targets hold ``IGNORE`` (-100) where a position is not
scored. ``TASKS`` maps each task name to its ``TaskSpec`` (defaults, example counts,
vocabulary size, backbone).

Each generator follows ``shared/reference/tasks.md`` (MAD's ``mad/data/instances.py``) in
format and distribution, vectorised with numpy. Where we differ on purpose, the task module
says so; common to all: every draw comes from a ``numpy.random.Generator`` seeded by
``SeedSequence([seed, crc32(task), split])``, never a global RNG, so train and test are
independent streams and the same arguments give the same bytes in any process. (MAD draws
the test set from the same stream after the train set, so its bytes cannot be matched.)
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from statemix.tasks import (compression, counting, fuzzy, memorization, permutation, recall, selective_copying,
                            text)
from statemix.tasks.common import IGNORE, SPLITS

__all__ = ["IGNORE", "SPLITS", "TASKS", "TaskSpec", "make_dataset", "resolve_params", "rng_for"]


@dataclass(frozen=True)
class TaskSpec:
    """One task: its generator, MAD default parameters and default example counts."""

    name: str
    generate: Callable[..., tuple[np.ndarray, np.ndarray]]
    defaults: dict
    num_examples: dict
    vocab_size: Callable[[dict], int]
    check: Callable[[dict], None]
    backbone: str = "lm"
    description: str = field(default="", compare=False)
    source: Callable[[], dict] | None = field(default=None, compare=False)

    def source_info(self) -> dict | None:
        """Identity (name, sha256) of the shipped data the task reads; None for generated tasks."""
        return self.source() if self.source else None


def _spec(name, module, defaults, num_examples, vocab_size=lambda p: p["vocab_size"], **kw):
    gen = getattr(module, "generate_" + name.replace("-", "_"))
    return TaskSpec(name, gen, defaults, num_examples, vocab_size, module.check, **kw)


_MAD = {"train": 12_800, "test": 1_280}
TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in (
        _spec("in-context-recall", recall,
              dict(vocab_size=16, seq_len=128, noise_vocab_size=0, frac_noise=0.0), _MAD,
              description="multi-query key-value recall; keys [0,V/2), values [V/2,V)"),
        _spec("noisy-in-context-recall", recall,
              dict(vocab_size=32, seq_len=128, noise_vocab_size=16, frac_noise=0.2), _MAD,
              description="in-context recall with noise pairs from the top noise_vocab_size ids"),
        _spec("fuzzy-in-context-recall", fuzzy,
              dict(vocab_size=16, seq_len=128, k_motif_size=3, v_motif_size=3), _MAD,
              description="recall of multi-token keys and values, left-padded with V-1"),
        _spec("selective-copying", selective_copying,
              dict(vocab_size=16, seq_len=256, num_tokens_to_copy=16), _MAD,
              description="copy the non-blank tokens, in order, after the copy token"),
        _spec("compression", compression, dict(vocab_size=16, seq_len=32), _MAD,
              backbone="autoencoder",
              description="reconstruct the whole sequence from the state at the last token"),
        _spec("memorization", memorization,
              dict(vocab_size=256, seq_len=32, kv_map_seed=12345), {"train": 256, "test": 1_280},
              description="a fixed key->value map (in-weights), queried by [key, insert] pairs"),
        _spec("permutation", permutation, dict(group="S5", seq_len=16),
              {"train": 100_000, "test": 1_280}, vocab_size=permutation.vocab_size,
              description="prefix products of random elements of S_n, scored everywhere"),
        _spec("parity", counting,
              dict(min_len=3, max_len=40, test_min_len=40, test_max_len=256),
              {"train": 100_000, "test": 1_280}, vocab_size=counting.vocab_size,
              description="parity of the number of 2s, answered at the last bit; test is longer"),
        _spec("modular-counting", counting,
              dict(min_len=3, max_len=40, test_min_len=40, test_max_len=256, modulus=3),
              {"train": 100_000, "test": 1_280}, vocab_size=counting.vocab_size,
              description="number of 2s mod `modulus`, answered at the last symbol; test is longer"),
        _spec("lm", text, dict(seq_len=256, eval_part="valid"), {"train": 9_088, "test": 512},
              vocab_size=text.vocab_size, source=text.source,
              description="next byte of CPython 3.11.7 stdlib source (shipped); test = the valid part"),
    )
}


def _parse(key, value, default):
    kind = type(default)
    try:
        if isinstance(value, bool):
            raise TypeError
        if kind is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if isinstance(value, str):
            return kind(value)
        if kind is int and isinstance(value, (int, np.integer)):
            return int(value)
        if kind is float and isinstance(value, (int, float, np.integer, np.floating)):
            return float(value)
        raise TypeError
    except (TypeError, ValueError):
        raise ValueError(
            f"task parameter {key!r} must be {kind.__name__}, got {value!r}"
        ) from None


def resolve_params(task: str, **overrides) -> dict:
    """Task defaults with ``overrides`` applied, typed and checked; raises ValueError."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    spec = TASKS[task]
    unknown = sorted(set(overrides) - set(spec.defaults))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for task {task!r}; allowed: {sorted(spec.defaults)}"
        )
    params = dict(spec.defaults)
    for key, value in overrides.items():
        params[key] = _parse(key, value, spec.defaults[key])
    spec.check(params)
    return params


def rng_for(task: str, seed: int, split: str) -> np.random.Generator:
    """The generator for one (task, seed, split): stable across processes and machines."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    entropy = [int(seed), zlib.crc32(task.encode()), SPLITS.index(split)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def make_dataset(task: str, num_examples: int, seed: int, split: str, **task_params):
    """Generate ``(inputs, targets)``, int64 ``[num_examples, T]``; targets -100 = unscored."""
    params = resolve_params(task, **task_params)
    if not isinstance(num_examples, (int, np.integer)) or isinstance(num_examples, bool) \
            or num_examples < 1:
        raise ValueError(f"num_examples must be a positive int, got {num_examples!r}")
    rng = rng_for(task, seed, split)
    inputs, targets = TASKS[task].generate(rng, int(num_examples), split, **params)
    return inputs.astype(np.int64, copy=False), targets.astype(np.int64, copy=False)
