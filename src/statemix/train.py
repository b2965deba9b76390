"""Train one architecture x width on one task: `python -m statemix.train --task T --arch A --width W --seed S
--data DIR --out DIR [--params FILE ...] [--set section.key=value ...]`.

Writes OUT/config.yaml (resolved config) first, OUT/checkpoint.pt and OUT/history.csv every epoch, and
OUT/metrics.json last, only once the run is complete ("status": "ok", or "failed" when the loss diverged in
the first epoch). A run that diverges later is "ok" with `"diverged"` set to the error: it reports its best
epoch before the NaN, as MAD does. Re-running the same command resumes from the checkpoint, or leaves a complete
folder as it is, but only when the run's fingerprint (config, data, code; statemix.runs) is unchanged: otherwise
the old folder is moved aside (--stale) and the run starts afresh. Each epoch prints a line; the MLflow run is
live (RUNNING while it trains).
Exit status: 0 ok (diverged included), 2 bad input, 3 failed (metrics.json says "failed"), 130 Ctrl-C,
143 SIGTERM.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from statemix import config as config_mod
from statemix import generate as generate_stage
from statemix import progress, runs
from statemix.io import atomic_write_text
from statemix.provenance import peak_memory, provenance
from statemix.trainer import Diverged, Split, Trainer, resolve_device, resolve_precision, seed_everything

EXIT_DIVERGED = 3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m statemix.train", description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, help="task name (statemix.tasks.TASKS); must match the data")
    p.add_argument("--arch", required=True, help="architecture (statemix.models.registry)")
    p.add_argument("--width", required=True, help="recurrent state scalars per layer (statemix.models.registry)")
    p.add_argument("--seed", default=None, help="training seed (default: train.seed)")
    p.add_argument("--data", required=True, help="dataset folder holding train/ and test/")
    p.add_argument("--out", required=True, help="result folder")
    p.add_argument("--params", action="append", default=[], help="params YAML file(s) applied over default.yaml")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    p.add_argument("--run-name", default="", help="MLflow run name (default: task[params]/arch/norm/width/seed)")
    p.add_argument("--stale", default="move", choices=runs.STALE_ACTIONS,
                   help="what to do with a folder holding another run: move it to OUT.stale-<time>/ or delete it")
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
    """Read one split written by `python -m statemix.generate` (sha256-checked) and check it holds `task`."""
    inputs, targets, manifest = generate_stage.load(folder)
    if manifest["task"] != task:
        raise ValueError(f"--data: {str(folder)!r} holds task {manifest['task']!r}, but --task is {task!r}")
    return inputs, targets, manifest


def make_model(cfg: config_mod.Config, vocab_size: int, seq_len: int, backbone: str) -> torch.nn.Module:
    """build_model, passing the mixer options (gate norm, op backend) that the registry says the architecture
    takes; an option it does not take must stay at its default."""
    from statemix.models import build_model, registry
    accepted = registry[cfg.model.arch].options
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
                       init=cfg.model.init, positions=cfg.model.positions, **options)


def _describe(cfg: config_mod.Config, model: torch.nn.Module, backbone: str, device: torch.device) -> dict:
    from statemix.models import registry
    return {"status": "ok", "error": None, "task": cfg.data.task, "arch": cfg.model.arch,
            "width": cfg.model.width, "seed": cfg.train.seed, "experiment": cfg.track.experiment,
            "backbone": backbone, "device": device.type, "precision": resolve_precision(cfg.train.precision, device),
            "params_total": sum(p.numel() for p in model.parameters()),
            "params_mixer_layer": registry[cfg.model.arch].param_count(cfg.model.d_model, cfg.model.width),
            "state_size": cfg.model.width * cfg.model.n_layers}


class Terminated(KeyboardInterrupt):
    """SIGTERM (Snakemake or a scheduler stopping the job): handled like Ctrl-C, the MLflow run ends KILLED."""


def _terminate(signum, frame):
    raise Terminated(f"signal {signum}")


@dataclasses.dataclass
class Job:
    """One prepared training: its resolved config, folder, data provenance, model, trainer and live run."""
    cfg: config_mod.Config
    out: Path
    manifests: dict
    device: torch.device
    backbone: str
    model: torch.nn.Module
    trainer: Trainer
    start: float
    started_at: float
    fingerprint: dict
    name: str
    live: object | None

    def abort(self, err: BaseException) -> None:
        """End the live run KILLED (Ctrl-C, SIGTERM) or FAILED (any other exception)."""
        if self.live is not None:
            self.live.end("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED", repr(err))


def run(args: argparse.Namespace) -> int:
    """Check everything, then train afresh, resume, or keep a complete result (statemix.runs.prepare_out);
    track live, and write metrics.json last."""
    job = prepare(args)
    if isinstance(job, int):
        return job
    try:
        result = job.trainer.fit()
    except Diverged as err:
        return finish(job, None, err)
    except BaseException as err:
        job.abort(err)
        raise
    return finish(job, result)


def prepare(args: argparse.Namespace, loaded: dict | None = None, graphed: bool = True) -> Job | int:
    """Everything before training: checks, run identity, config.yaml, data, model, trainer (resumed later by
    fit). Returns the exit status instead when the folder is complete already with the same fingerprint.
    `loaded` caches splits by folder; graphed=False keeps the trainer eager (a batch worker steps the model)."""
    start, started_at = time.perf_counter(), time.time()
    cfg = resolve_config(args)
    out = Path(args.out)
    cache = {} if loaded is None else loaded
    for split in ("train", "test"):
        folder = str(Path(cfg.data.dir) / split)
        if (folder, cfg.data.task) not in cache:
            cache[folder, cfg.data.task] = load_split(Path(folder), cfg.data.task)
    loaded = {split: cache[str(Path(cfg.data.dir) / split), cfg.data.task] for split in ("train", "test")}
    manifests = {split: manifest for split, (_, _, manifest) in loaded.items()}
    device = resolve_device(cfg.train.device)
    fingerprint = runs.fingerprint(cfg, manifests, device)
    if cfg.track.enabled:
        from statemix import track
        track.check(cfg.track.experiment, track.tracking_uri(cfg.track.uri))
    state = runs.prepare_out(out, fingerprint, getattr(args, "stale", "move"))
    if state == "complete":
        status = json.loads((out / runs.METRICS).read_text())["status"]
        print(f"{out}: complete already, same fingerprint (status {status}); nothing to do", flush=True)
        return 0 if status == "ok" else EXIT_DIVERGED
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", config_mod.dump(cfg))

    backbone = manifests["train"]["backbone"] if cfg.model.backbone == "auto" else cfg.model.backbone
    vocab_size = manifests["train"]["vocab_size"]
    seed_everything(cfg.train.seed)
    model = make_model(cfg, vocab_size, max(m["seq_len"] for m in manifests.values()), backbone).to(device)
    splits = [Split(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y, _ in loaded.values()]
    name = getattr(args, "run_name", "") or run_name(cfg, manifests["train"])
    train_cfg = cfg.train if graphed else dataclasses.replace(cfg.train, cuda_graphs="off")
    trainer = Trainer(model, *splits, vocab_size, train_cfg, out, device, fingerprint)
    trainer.hooks.append(progress.EpochPrinter(cfg.train.max_epochs, trainer.steps_per_epoch()))
    live = track.LiveRun(out, cfg, name, fingerprint["sha256"]) if cfg.track.enabled else None
    if live is not None:
        trainer.hooks.append(live)
    print(f"{out}: {'resuming' if state == 'resume' else 'training'} {name} on {device.type} "
          f"(fingerprint {fingerprint['sha256'][:12]})", flush=True)
    return Job(cfg, out, manifests, device, backbone, model, trainer, start, started_at, fingerprint, name, live)


def finish(job: Job, result: dict | None, error: Exception | None = None) -> int:
    """Write metrics.json (and track) for a finished run: `result` from Trainer.fit, or the divergence."""
    cfg, out, trainer, device = job.cfg, job.out, job.trainer, job.device
    metrics, code = {**_describe(cfg, job.model, job.backbone, device), "run_name": job.name}, 0
    if error is None:
        selected = result.pop("selected")
        metrics.update({"selected_epoch": selected.pop("epoch"), "select": cfg.train.select, **selected,
                        "last": result.pop("last"), **result})
        if result["diverged"]:
            print(f"statemix.train: warning: {result['diverged']}; reporting epoch {metrics['selected_epoch']}, "
                  "the best before it (flagged diverged)", file=sys.stderr, flush=True)
    else:
        print(f"statemix.train: error: {error}; the run is marked failed", file=sys.stderr, flush=True)
        metrics.update({"status": "failed", "error": str(error), "epochs": trainer.epoch})
        code = EXIT_DIVERGED
        if trainer.history:
            atomic_write_text(out / "history.csv", pd.DataFrame(trainer.history).to_csv(index=False))
    memory, kind = peak_memory(device)
    metrics.update({"wall_time_s": time.perf_counter() - job.start, "started_at": job.started_at,
                    "ended_at": time.time(), "peak_memory_bytes": memory, "peak_memory_kind": kind,
                    "fingerprint": job.fingerprint, "provenance": provenance(device, job.manifests, out)})
    metrics_text = json.dumps(metrics, indent=2, allow_nan=True) + "\n"
    if job.live is not None:
        history = out / "history.csv"
        job.live.finish(metrics_text, history.read_text() if history.exists() else "")
    atomic_write_text(out / runs.METRICS, metrics_text)
    print(progress.summary(out, metrics), flush=True)
    return code


def run_name(cfg: config_mod.Config, manifest: dict) -> str:
    """A readable run name for a training started by hand: task with its params, arch, gate norm, width, seed."""
    params = ",".join(f"{k}={v}" for k, v in sorted(manifest.get("params", {}).items()))
    return (f"{cfg.data.task}[{params}]/{cfg.model.arch}/norm={cfg.model.norm}/w{cfg.model.width}"
            f"/s{cfg.train.seed}")


def run_cli(prog: str, body) -> int:
    """Exit status of a training CLI's `body()`: a ValueError is bad input (2, the message on stderr); Ctrl-C or
    SIGTERM stops it (130 / 143) after saying how to resume; otherwise what `body` returns."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return body()
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"{prog}: stopped ({err or 'interrupted'}); rerun the same command to resume", file=sys.stderr,
              flush=True)
        return 143 if isinstance(err, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None) -> int:
    return run_cli("statemix.train", lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
