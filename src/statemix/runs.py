"""Run identity and checkpoints: what makes two trainings "the same run", and how a result folder is reused.

A run's fingerprint covers its config (minus keys that cannot change its numbers), its datasets' sha256, the
sha256 of the code that computes it (`grids.FINGERPRINT_CODE`, working-tree content, so uncommitted edits
count), the torch version and the device type. `prepare_out` decides what to do with a result folder:

- `complete`: metrics.json exists with this fingerprint; nothing to do;
- `resume`: checkpoint.pt exists with this fingerprint; training continues from it;
- `fresh`: anything else. Whatever the folder held (another fingerprint, a pre-fingerprint result, an
  unreadable checkpoint) is first moved aside to OUT.stale-<UTC time>/ or deleted, so no old number is ever
  reported under the new run's provenance.

Checkpoints hold only tensors and plain Python values and load with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from statemix import config as config_mod
from statemix import grids
from statemix.io import atomic_write_bytes

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
STALE_ACTIONS = ("move", "delete")


def code_sha256(root: Path = grids.ROOT) -> str:
    """sha256 over the path and bytes of every file in grids.FINGERPRINT_CODE, as they are on disk now."""
    files = grids.matching(grids.FINGERPRINT_CODE, root)
    if not files:
        raise ValueError(f"no source files match grids.FINGERPRINT_CODE under {root}; is statemix installed "
                         f"from a source checkout (pip install -e .)?")
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return h.hexdigest()


def fingerprint(cfg: config_mod.Config, manifests: dict, device: torch.device) -> dict:
    """The identity of a run, with its own sha256 under "sha256"."""
    parts = {"config": config_mod.identity(config_mod.flatten(cfg)),
             "data": {split: m["sha256"] for split, m in sorted(manifests.items())},
             "code_sha256": code_sha256(), "torch": str(torch.__version__), "device": device.type}
    return {"sha256": hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest(), **parts}


def differences(old: dict | None, new: dict) -> str:
    """What separates two fingerprints, in words (for the message that moves a stale folder aside)."""
    if not old:
        return "it was written without a fingerprint"
    out = []
    for key in ("code_sha256", "torch", "device", "data"):
        if old.get(key) != new.get(key):
            out.append({"code_sha256": "the code changed"}.get(key, f"{key} changed"))
    old_cfg, new_cfg = old.get("config") or {}, new.get("config") or {}
    out += [f"{k}: {old_cfg.get(k)!r} -> {new_cfg.get(k)!r}" for k in sorted(set(old_cfg) | set(new_cfg))
            if old_cfg.get(k) != new_cfg.get(k)]
    return "; ".join(out) or "its fingerprint differs"


def _folder_fingerprint(out: Path) -> tuple[str, dict | None]:
    """(what the folder holds, the fingerprint recorded there): complete | checkpoint | unreadable | empty."""
    metrics = out / METRICS
    if metrics.exists():
        try:
            return "complete", json.loads(metrics.read_text()).get("fingerprint")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "unreadable", None
    if (out / CHECKPOINT).exists():
        try:
            return "checkpoint", load_checkpoint(out / CHECKPOINT).get("fingerprint")
        except ValueError:
            return "unreadable", None
    return ("other" if out.is_dir() and any(out.iterdir()) else "empty"), None


def prepare_out(out: Path, fp: dict, stale: str = "move", log=print) -> str:
    """complete | resume | fresh for result folder `out` and fingerprint `fp` (see the module docstring)."""
    if stale not in STALE_ACTIONS:
        raise ValueError(f"--stale: got {stale!r}; allowed: {list(STALE_ACTIONS)}")
    kind, found = _folder_fingerprint(out)
    same = bool(found) and found.get("sha256") == fp["sha256"]
    if kind == "complete" and same:
        return "complete"
    if kind == "checkpoint" and same:
        return "resume"
    if kind == "empty":
        return "fresh"
    why = {"unreadable": "its metrics.json or checkpoint cannot be read safely",
           "other": "it holds files but no checkpoint or metrics.json"}.get(kind) or differences(found, fp)
    if stale == "delete":
        shutil.rmtree(out)
        log(f"{out}: deleted the previous run ({why}); training afresh", flush=True)
    else:
        aside = out.with_name(f"{out.name}.stale-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        n = 1
        while aside.exists():
            aside, n = aside.with_name(f"{aside.name.split('~')[0]}~{n}"), n + 1
        out.rename(aside)
        log(f"{out}: moved the previous run to {aside} ({why}); training afresh", flush=True)
    return "fresh"


def rng_state() -> dict:
    """Every RNG's state as tensors and plain values (weights_only-loadable)."""
    np_state = np.random.get_state(legacy=False)
    version, words, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"bit_generator": np_state["bit_generator"],
                       "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                       "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                       "gauss": float(np_state["gauss"])},
             "random": [version, list(words), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"], "has_gauss": n["has_gauss"], "gauss": n["gauss"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]}})
    version, words, gauss = state["random"]
    random.setstate((version, tuple(words), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save `state` (tensors, dicts, lists, numbers, strings) atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """torch.load with weights_only=True; ValueError naming the file when it holds anything else."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError) as err:
        raise ValueError(f"{path}: not a checkpoint that loads with weights_only=True (written by an older "
                         f"statemix, damaged, or not a statemix checkpoint): {str(err).splitlines()[0]}") from None
