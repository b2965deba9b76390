"""Generate stage: write one split of one task to a folder, with a manifest.

    python -m statemix.generate --task in-context-recall --split train --out data/icr/train \
        [--seed 12345] [--set vocab_size=32 --set num_examples=6400 ...]

writes ``OUT/inputs.npy``, ``OUT/targets.npy`` (int64 ``[num_examples, T]``, targets -100
where unscored) and, last, ``OUT/manifest.json``. Each file is written atomically and an
old manifest is removed before anything else is touched, so a folder with a manifest is a
complete dataset. Running again with the same arguments on a complete, unchanged folder
does nothing. ``--set`` takes the task's parameters (see ``statemix.tasks.TASKS``) and
``num_examples`` (default: the task's MAD count for the split).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from statemix.checks import split_assignment
from statemix.io import atomic_save_npy, atomic_write_json, sha256_array
from statemix.tasks import IGNORE, SPLITS, TASKS, make_dataset, resolve_params

MANIFEST = "manifest.json"
DEFAULT_SEED = 12345


def parse_sets(items) -> dict:
    """``["key=value", ...]`` -> dict of strings; ValueError names a malformed item."""
    out = {}
    for item in items or []:
        pair = split_assignment(item)
        if pair is None:
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[pair[0].strip()] = pair[1].strip()
    return out


def build_manifest(task, split, seed, params, inputs, targets) -> dict:
    """Everything a consumer needs to use and verify one split."""
    spec = TASKS[task]
    return {
        "task": task,
        "split": split,
        "seed": seed,
        "params": params,
        "num_examples": int(inputs.shape[0]),
        "shape": list(inputs.shape),
        "seq_len": int(inputs.shape[1]),
        "vocab_size": int(spec.vocab_size(params)),
        "backbone": spec.backbone,
        "ignore_index": IGNORE,
        "num_scored": int((targets != IGNORE).sum()),
        "sha256": {"inputs": sha256_array(inputs), "targets": sha256_array(targets)},
        "numpy_version": np.__version__,  # Generator streams are fixed per numpy version
        "source": spec.source_info(),
    }


def load(folder, verify: bool = True):
    """Read ``(inputs, targets, manifest)`` from a folder written by this stage."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        raise ValueError(f"{folder} holds no {MANIFEST}: not a complete dataset")
    manifest = json.loads((folder / MANIFEST).read_text())
    inputs, targets = (_load_array(folder / f"{name}.npy") for name in ("inputs", "targets"))
    if verify:
        for name, arr in (("inputs", inputs), ("targets", targets)):
            if sha256_array(arr) != manifest["sha256"][name]:
                raise ValueError(f"{folder / (name + '.npy')} does not match its manifest sha256")
    return inputs, targets, manifest


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{path} is missing; regenerate the dataset (python -m statemix.generate)") from None
    except (ValueError, EOFError, OSError) as err:
        raise ValueError(f"{path} cannot be read as a .npy array (truncated or damaged?): {err}; "
                         f"regenerate the dataset (python -m statemix.generate)") from None


def _up_to_date(folder: Path, wanted: dict) -> bool:
    try:
        _, _, manifest = load(folder, verify=True)
    except (ValueError, OSError, KeyError, json.JSONDecodeError):
        return False
    keys = ("task", "split", "seed", "params", "num_examples", "source")
    return all(manifest.get(k) == wanted[k] for k in keys)


def generate(task: str, split: str, out, seed: int = DEFAULT_SEED, sets: dict | None = None):
    """Write one split to ``out``; return its manifest. Skips work already done."""
    sets = dict(sets or {})
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    num = sets.pop("num_examples", TASKS[task].num_examples[split])
    try:
        num = int(num)
    except ValueError:
        raise ValueError(f"num_examples must be an int, got {num!r}") from None
    params = resolve_params(task, **sets)
    out = Path(out)
    wanted = {"task": task, "split": split, "seed": seed, "params": params, "num_examples": num,
              "source": TASKS[task].source_info()}
    if _up_to_date(out, wanted):
        return json.loads((out / MANIFEST).read_text())
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    inputs, targets = make_dataset(task, num, seed, split, **params)
    atomic_save_npy(out / "inputs.npy", inputs)
    atomic_save_npy(out / "targets.npy", targets)
    manifest = build_manifest(task, split, seed, params, inputs, targets)
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def main(argv=None) -> dict:
    """CLI entry point; raises ValueError on bad arguments."""
    ap = argparse.ArgumentParser(prog="python -m statemix.generate", description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True, help=f"one of: {', '.join(TASKS)}")
    ap.add_argument("--split", required=True, help=" | ".join(SPLITS))
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="task parameter or num_examples; repeatable")
    args = ap.parse_args(argv)
    manifest = generate(args.task, args.split, args.out, args.seed, parse_sets(args.set))
    print(f"{args.out}: {manifest['task']}/{manifest['split']} shape {manifest['shape']} "
          f"vocab {manifest['vocab_size']} scored {manifest['num_scored']}")
    return manifest


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
