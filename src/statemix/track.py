"""MLflow tracking: the only module that imports mlflow.

A training is logged live (`LiveRun`, a Trainer hook): the run is created RUNNING with its params when training
starts, each epoch's history row is logged as it ends, and at the end the run gets the run-level summaries
(`selected.*` at the selected epoch, `final.*` at the last one, `total.*` and `run.*`; never a per-epoch key),
provenance tags, artifacts (metrics.json, history.csv, config.yaml, a curve figure) and FINISHED or FAILED;
Ctrl-C or SIGTERM end it KILLED. A run that was SIGKILLed stays RUNNING until the same folder trains again,
which marks it KILLED. Each finished run carries the sha256 of its metrics.json as tag `statemix_run_key`, so
`python -m statemix.track import RESULTS_DIR` logs runs made elsewhere (in one go, with their recorded start
and end times) without duplicating any. Experiments are tagged for MLflow 3's model-training view.

Store: `track.uri` if set, else $MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db. On SQLite, writes
from concurrent trainings take turns on a file lock, the database runs in WAL mode (the UI's reads do not block
writers) and a write that still meets "database is locked" is retried.
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import io
import json
import math
import os
import random
import sqlite3
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import yaml

from statemix import config as config_mod
from statemix.paths import project_root

RUN_KEY = "statemix_run_key"
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
_TOTALS = ("steps", "train_s", "eval_s")
_NOT_METRICS = ("last", "provenance", "fingerprint", "width", "seed", "started_at", "ended_at")
_BATCH = 1000


def tracking_uri(configured: str = "") -> str:
    if configured:
        return configured
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def _client(uri: str):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str) -> str:
    """The experiment's id, creating it if needed, always tagged to open in the model-training view."""
    from mlflow.exceptions import MlflowException
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, tags=EXPERIMENT_KIND)
        except MlflowException:
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    for key, value in EXPERIMENT_KIND.items():
        if found.tags.get(key) != value:
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def _retry(fn, *args, **kwargs):
    """Call fn, retrying for up to ~2 min while SQLite reports the database locked or busy."""
    delay = 0.05
    for attempt in range(40):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if attempt == 39 or not any(w in str(err).lower() for w in ("database is locked", "database is busy")):
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 1.5, 5.0)


@contextmanager
def _store_lock(uri: str):
    """Serialise processes on one SQLite store: MLflow's first-use schema migration races otherwise."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = _sqlite_path(uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / f".{db.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_path(uri: str) -> Path:
    return Path(uri[len("sqlite:///"):].split("?")[0])


def check(experiment: str, uri: str) -> str:
    """Open the store and the experiment before any training, so a broken store fails the run early; on SQLite
    also switch the database to WAL mode (persistent), so readers such as `mlflow ui` never block a writer."""
    with _store_lock(uri):
        exp_id = _retry(_experiment_id, _client(uri), experiment)
        if uri.startswith("sqlite:///"):
            with sqlite3.connect(_sqlite_path(uri), timeout=60) as db:
                db.execute("PRAGMA journal_mode=WAL")
        return exp_id


def run_key(metrics_text: str) -> str:
    return hashlib.sha256(metrics_text.encode()).hexdigest()


def _tags(metrics: dict, out_dir: Path, key: str) -> dict:
    prov = metrics.get("provenance", {})
    tags = {RUN_KEY: key, "status": metrics["status"], "out_dir": str(out_dir),
            "mlflow.runName": metrics.get("run_name") or _legacy_name(metrics, out_dir)}
    if metrics.get("fingerprint"):
        tags["fingerprint"] = metrics["fingerprint"]["sha256"]
    if metrics.get("error"):
        tags["error"] = str(metrics["error"])[:5000]
    if prov.get("git_commit"):
        tags["mlflow.source.git.commit"] = prov["git_commit"]
    if prov.get("out_dir") and prov["out_dir"] != str(out_dir):
        tags["source_out_dir"] = prov["out_dir"]
    for name, value in prov.items():
        if name in ("out_dir", "fingerprint"):
            continue
        if isinstance(value, dict):
            tags.update({f"{name}.{k}": str(v) for k, v in value.items()})
        elif value is not None:
            tags[name] = str(value)
    return tags


def _legacy_name(metrics: dict, out_dir: Path) -> str:
    """Name for a result written before metrics.json held its run name: the grid path's task/arch/variant/w/s."""
    parts = out_dir.parts[-5:]
    if len(parts) == 5 and parts[-2].startswith("w") and parts[-1].startswith("s"):
        return "/".join(parts)
    return f"{metrics['task']}/{metrics['arch']}/w{metrics['width']}/s{metrics['seed']}"


def _history_metrics(history: pd.DataFrame, now_ms: int) -> list:
    from mlflow.entities import Metric
    out = []
    for row in history.to_dict("records"):
        step = int(row["epoch"])
        out += [Metric(k, float(v), now_ms, step) for k, v in row.items()
                if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v)]
    return out


def summaries(metrics: dict) -> dict:
    """Run-level values under names no per-epoch series uses: selected.* (the reported epoch), final.* (the last
    epoch), total.* (sums over epochs), run.* (everything else numeric)."""
    out = {f"final.{k}": v for k, v in (metrics.get("last") or {}).items()}
    for key, value in metrics.items():
        if key in _NOT_METRICS:
            continue
        prefix = "selected" if key.startswith(("train_", "test_")) else "total" if key in _TOTALS else "run"
        out[f"{prefix}.{key}"] = value
    return {k: float(v) for k, v in out.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _summary_metrics(metrics: dict, now_ms: int) -> list:
    from mlflow.entities import Metric
    step = int(metrics.get("epochs") or 0)
    return [Metric(k, v, now_ms, step) for k, v in summaries(metrics).items()]


def _figure(history: pd.DataFrame, selected_epoch):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(9, 3.5))
    for ax, metric, label in zip(fig.subplots(1, 2), ("loss", "acc"), ("loss", "macro accuracy")):
        for split in ("train", "test"):
            ax.plot(history["epoch"], history[f"{split}_{metric}"], label=split)
        if selected_epoch:
            ax.axvline(selected_epoch, color="grey", linestyle=":", label="selected epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    if len(history) and history["train_loss"].min() > 0:
        fig.axes[0].set_yscale("log")
    fig.tight_layout()
    return fig


def log_run(out_dir: str | Path, config: config_mod.Config, metrics_text: str, history_csv: str,
            uri: str | None = None) -> tuple[str, bool]:
    """Log one result folder's content as an MLflow run; return (run_id, created). Existing runs are reused."""
    uri = uri or tracking_uri(config.track.uri)
    with _store_lock(uri):
        return _retry(_log_run, Path(out_dir).resolve(), config, metrics_text, history_csv, uri)


def _batches(client, run_id: str, metrics=(), params=(), tags=()) -> None:
    """log_batch in chunks within MLflow's limits (100 params or tags, 1000 metrics per call)."""
    for kind, items, size in (("params", list(params), 100), ("tags", list(tags), 100),
                              ("metrics", list(metrics), _BATCH)):
        for start in range(0, len(items), size):
            client.log_batch(run_id, **{kind: items[start:start + size]})


def _params(config: config_mod.Config) -> list:
    from mlflow.entities import Param
    return [Param(k, str(v)) for k, v in config_mod.flatten(config).items()]


def _complete(client, run_id: str, out_dir: Path, config: config_mod.Config, metrics_text: str, history_csv: str,
              with_history: bool, end_ms: int | None) -> None:
    """Everything a finished run gets: summaries (and the history when it was not logged live), tags, artifacts,
    its run key and its terminal status."""
    from mlflow.entities import RunStatus, RunTag
    metrics = json.loads(metrics_text)
    history = pd.read_csv(io.StringIO(history_csv)) if history_csv.strip() else pd.DataFrame({"epoch": []})
    now = int(time.time() * 1000)
    values = (_history_metrics(history, now) if with_history else []) + _summary_metrics(metrics, now)
    tags = _tags(metrics, out_dir, run_key(metrics_text))
    _batches(client, run_id, metrics=values, tags=[RunTag(k, v) for k, v in tags.items() if k != RUN_KEY])
    client.log_text(run_id, metrics_text, "metrics.json")
    client.log_text(run_id, history_csv, "history.csv")
    client.log_text(run_id, config_mod.dump(config), "config.yaml")
    if config.track.figure and len(history):
        client.log_figure(run_id, _figure(history, metrics.get("selected_epoch")), "curves.png")
    client.set_tag(run_id, RUN_KEY, tags[RUN_KEY])
    status = RunStatus.FINISHED if metrics["status"] == "ok" else RunStatus.FAILED
    client.set_terminated(run_id, RunStatus.to_string(status), end_time=end_ms)


def _log_run(out_dir: Path, config: config_mod.Config, metrics_text: str, history_csv: str, uri: str):
    from mlflow.entities import RunStatus
    metrics = json.loads(metrics_text)
    client = _client(uri)
    exp_id = _experiment_id(client, config.track.experiment)
    key = run_key(metrics_text)
    existing = client.search_runs([exp_id], filter_string=f"tags.{RUN_KEY} = '{key}'", max_results=1)
    if existing:
        return existing[0].info.run_id, False
    ms = {k: int(metrics[k] * 1000) if metrics.get(k) else None for k in ("started_at", "ended_at")}
    name = _tags(metrics, out_dir, key)["mlflow.runName"]
    run = client.create_run(exp_id, start_time=ms["started_at"], tags={"mlflow.runName": name,
                                                                        "out_dir": str(out_dir)})
    run_id = run.info.run_id
    try:
        _batches(client, run_id, params=_params(config))
        _complete(client, run_id, out_dir, config, metrics_text, history_csv, True, ms["ended_at"])
    except Exception:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        client.delete_run(run_id)
        raise
    return run_id, True


class LiveRun:
    """Trainer hook logging one training to MLflow while it runs (see the module docstring)."""

    def __init__(self, out_dir: str | Path, config: config_mod.Config, name: str, fingerprint: str):
        self.out, self.config, self.name, self.fingerprint = Path(out_dir).resolve(), config, name, fingerprint
        self.uri = tracking_uri(config.track.uri)
        self.client = self.run_id = None

    def _write(self, fn, *args, **kwargs):
        with _store_lock(self.uri):
            return _retry(fn, *args, **kwargs)

    def start(self, trainer) -> None:
        """Create the RUNNING run with its params; a resumed training also logs the epochs done before."""
        self._write(self._start, trainer.history)

    def _start(self, history: list) -> None:
        from mlflow.entities import RunStatus
        client = self.client = self.client or _client(self.uri)
        exp_id = _experiment_id(client, self.config.track.experiment)
        stale = client.search_runs([exp_id], filter_string=f"tags.out_dir = '{self.out}' and "
                                                            "attributes.status = 'RUNNING'")
        for run in stale:
            client.set_tag(run.info.run_id, "error", "never ended (process killed); its folder trained again")
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        tags = {"mlflow.runName": self.name, "out_dir": str(self.out), "fingerprint": self.fingerprint,
                "status": "running", "resumed_at_epoch": str(len(history))}
        self.run_id = client.create_run(exp_id, start_time=int(time.time() * 1000), tags=tags).info.run_id
        _batches(client, self.run_id, params=_params(self.config),
                 metrics=_history_metrics(pd.DataFrame(history), int(time.time() * 1000)) if history else ())

    def epoch(self, row: dict) -> None:
        self._write(_batches, self.client, self.run_id,
                    metrics=_history_metrics(pd.DataFrame([row]), int(time.time() * 1000)))

    def finish(self, metrics_text: str, history_csv: str) -> None:
        """Summaries, tags, artifacts, run key, FINISHED (or FAILED for a diverged run)."""
        self._write(_complete, self.client, self.run_id, self.out, self.config, metrics_text, history_csv, False,
                    int(time.time() * 1000))

    def end(self, status: str, error: str = "") -> None:
        """End the run KILLED or FAILED (an exception stopped the training)."""
        if self.run_id is None:
            return

        def _end():
            if error:
                self.client.set_tag(self.run_id, "error", error[:5000])
            self.client.set_tag(self.run_id, "status", status.lower())
            self.client.set_terminated(self.run_id, status, end_time=int(time.time() * 1000))
        self._write(_end)


def import_results(results_dir: str | Path, uri: str | None = None, experiment: str | None = None) -> tuple[int, int]:
    """Log every complete result folder (one with metrics.json) under `results_dir`; return (created, skipped)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ValueError(f"RESULTS_DIR: {str(root)!r} is not a folder")
    created = skipped = 0
    for metrics_path in sorted(root.rglob("metrics.json")):
        folder = metrics_path.parent
        if not (folder / "config.yaml").exists():
            continue
        config = config_mod.from_dict(yaml.safe_load((folder / "config.yaml").read_text()), str(folder / "config.yaml"))
        if experiment:
            config = dataclasses.replace(config, track=dataclasses.replace(config.track, experiment=experiment))
        history = folder / "history.csv"
        _, new = log_run(folder, config, metrics_path.read_text(), history.read_text() if history.exists() else "",
                         uri)
        created, skipped = created + new, skipped + (not new)
    return created, skipped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m statemix.track", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="(re)build MLflow runs from result folders, skipping runs already logged")
    imp.add_argument("results_dir")
    imp.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI, else mlflow.db)")
    imp.add_argument("--experiment", default=None, help="log into this experiment instead of each config's")
    args = parser.parse_args(argv)
    try:
        created, skipped = import_results(args.results_dir, args.uri, args.experiment)
    except ValueError as err:
        print(f"statemix.track: error: {err}", file=sys.stderr)
        return 2
    print(f"imported {created} run(s); {skipped} already present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
