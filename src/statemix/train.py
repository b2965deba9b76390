"""Train one architecture x width on one task: `python -m statemix.train --task T --arch A --width W --seed S
--data DIR --out DIR [--params FILE ...] [--set section.key=value ...]`.

Writes OUT/config.yaml (resolved config) first, OUT/checkpoint.pt and OUT/history.csv every epoch, and
OUT/metrics.json last, only once the run is complete ("status": "ok", or "failed" when the loss diverged).
Re-running the same command resumes from the checkpoint; a complete folder is left as it is.
Exit status: 0 ok, 2 bad input, 3 diverged (metrics.json says "failed").
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from statemix import config as config_mod
from statemix import data as data_stage
from statemix.io import atomic_write_text
from statemix.provenance import peak_memory, provenance
from statemix.trainer import Diverged, Split, Trainer, resolve_device, resolve_precision, seed_everything

EXIT_DIVERGED = 3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m statemix.train", description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, help="task name (statemix.tasks.TASKS); must match the data")
    p.add_argument("--arch", required=True, help="architecture (statemix.models.registry)")
    p.add_argument("--width", required=True, help="mixer width (channels / blocks / hidden size)")
    p.add_argument("--seed", default=None, help="training seed (default: train.seed)")
    p.add_argument("--data", required=True, help="dataset folder holding train/ and test/")
    p.add_argument("--out", required=True, help="result folder")
    p.add_argument("--params", action="append", default=[], help="params YAML file(s) applied over default.yaml")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> config_mod.Config:
    """default.yaml, then --params files, then --set, then the run-identity flags; registries checked."""
    flags = [f"data.task={args.task}", f"model.arch={args.arch}", f"model.width={args.width}",
             f"data.dir={args.data}"] + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    cfg = config_mod.load(args.params, list(args.overrides) + flags)
    from statemix.models import registry
    from statemix.tasks import TASKS
    if cfg.data.task not in TASKS:
        raise ValueError(f"--task: unknown task {cfg.data.task!r}; allowed: {sorted(TASKS)}")
    if cfg.model.arch not in registry:
        raise ValueError(f"--arch: unknown architecture {cfg.model.arch!r}; allowed: {sorted(registry)}")
    return cfg


def load_split(folder: Path, task: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read one split written by `python -m statemix.data` (sha256-checked) and check it holds `task`."""
    inputs, targets, manifest = data_stage.load(folder)
    if manifest["task"] != task:
        raise ValueError(f"--data: {str(folder)!r} holds task {manifest['task']!r}, but --task is {task!r}")
    return inputs, targets, manifest


def make_model(cfg: config_mod.Config, vocab_size: int, seq_len: int, backbone: str) -> torch.nn.Module:
    """build_model, passing the mixer options (gate norm, op backend) that the architecture takes; an option
    it does not take must stay at its default."""
    from statemix.models import build_model, registry
    accepted = inspect.signature(registry[cfg.model.arch].factory).parameters
    options = {}
    for key in ("norm", "backend"):
        value, default = getattr(cfg.model, key), config_mod.default_value(f"model.{key}")
        if key in accepted:
            options[key] = value
        elif value != default:
            raise ValueError(f"model.{key}: got {value!r}, but {cfg.model.arch} has no such option; "
                             f"leave it at {default!r}")
    return build_model(cfg.model.arch, cfg.model.width, vocab_size, seq_len, d_model=cfg.model.d_model,
                       n_layers=cfg.model.n_layers, backbone=backbone, channel_mixer=cfg.model.channel_mixer,
                       **options)


def _describe(cfg: config_mod.Config, model: torch.nn.Module, backbone: str, device: torch.device) -> dict:
    from statemix.models import registry
    return {"status": "ok", "error": None, "task": cfg.data.task, "arch": cfg.model.arch,
            "width": cfg.model.width, "seed": cfg.train.seed, "experiment": cfg.track.experiment,
            "backbone": backbone, "device": device.type, "precision": resolve_precision(cfg.train.precision, device),
            "params_total": sum(p.numel() for p in model.parameters()),
            "params_mixer_layer": registry[cfg.model.arch].param_count(cfg.model.d_model, cfg.model.width),
            "state_size": cfg.model.width * cfg.model.n_layers}


def run(args: argparse.Namespace) -> int:
    """Check everything, train (or resume), then write history, track, and write metrics.json last."""
    start = time.perf_counter()
    cfg = resolve_config(args)
    out = Path(args.out)
    if (out / "metrics.json").exists():
        status = json.loads((out / "metrics.json").read_text())["status"]
        print(f"{out}: complete already (status {status}); nothing to do")
        return 0 if status == "ok" else EXIT_DIVERGED
    loaded = {split: load_split(Path(cfg.data.dir) / split, cfg.data.task) for split in ("train", "test")}
    manifests = {split: manifest for split, (_, _, manifest) in loaded.items()}
    if cfg.track.enabled:
        from statemix import track
        track.check(cfg.track.experiment, track.tracking_uri(cfg.track.uri))
    device = resolve_device(cfg.train.device)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", config_mod.dump(cfg))

    backbone = manifests["train"]["backbone"] if cfg.model.backbone == "auto" else cfg.model.backbone
    vocab_size = manifests["train"]["vocab_size"]
    seed_everything(cfg.train.seed)
    model = make_model(cfg, vocab_size, max(m["seq_len"] for m in manifests.values()), backbone).to(device)
    splits = [Split(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y, _ in loaded.values()]
    fingerprint = {"config": {k: v for k, v in config_mod.flatten(cfg).items()
                              if not k.startswith("track.") and k != "data.dir"},
                   "data": {s: m["sha256"] for s, m in manifests.items()}, "device": device.type}
    trainer = Trainer(model, *splits, vocab_size, cfg.train, out, device, fingerprint)
    metrics, code = _describe(cfg, model, backbone, device), 0
    try:
        result = trainer.fit()
        selected = result.pop("selected")
        metrics.update({"selected_epoch": selected.pop("epoch"), "select": cfg.train.select, **selected,
                        "last": result.pop("last"), **result})
    except Diverged as err:
        print(f"statemix.train: error: {err}; the run is marked failed", file=sys.stderr)
        metrics.update({"status": "failed", "error": str(err), "epochs": trainer.epoch})
        code = EXIT_DIVERGED
        if trainer.history:
            atomic_write_text(out / "history.csv", pd.DataFrame(trainer.history).to_csv(index=False))
    memory, kind = peak_memory(device)
    metrics.update({"wall_time_s": time.perf_counter() - start, "peak_memory_bytes": memory,
                    "peak_memory_kind": kind, "provenance": provenance(device, manifests, out)})
    metrics_text = json.dumps(metrics, indent=2, allow_nan=True) + "\n"
    if cfg.track.enabled:
        history = out / "history.csv"
        track.log_run(out, cfg, metrics_text, history.read_text() if history.exists() else "")
    atomic_write_text(out / "metrics.json", metrics_text)
    return code


def main(argv=None) -> int:
    try:
        return run(parse_args(argv))
    except ValueError as err:
        print(f"statemix.train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
