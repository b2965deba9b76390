"""MLflow tracking: the only module that imports mlflow.

A finished (or failed) training is logged as one run, in one go, from what it wrote to its result folder:
the flattened config as params, history.csv as per-epoch metrics (batched: per-call logging is slow on
SQLite), provenance tags from metrics.json, and metrics.json, history.csv, config.yaml and a curve figure as
artifacts. Each run carries the sha256 of its metrics.json as tag `statemix_run_key`, so
`python -m statemix.track import RESULTS_DIR` rebuilds runs made elsewhere without duplicating any.

Store: `track.uri` if set, else $MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db.
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
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import yaml

from statemix import config as config_mod

RUN_KEY = "statemix_run_key"
_ROOT = Path(__file__).resolve().parents[2]
_BATCH = 1000


def project_root() -> Path:
    return _ROOT if (_ROOT / "pyproject.toml").exists() else Path.cwd()


def tracking_uri(configured: str = "") -> str:
    if configured:
        return configured
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def _client(uri: str):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str) -> str:
    from mlflow.exceptions import MlflowException
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@contextmanager
def _store_lock(uri: str):
    """Serialise processes on one SQLite store: MLflow's first-use schema migration races otherwise."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri[len("sqlite:///"):].split("?")[0])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / f".{db.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check(experiment: str, uri: str) -> str:
    """Open the store and the experiment before any training, so a broken store fails the run early."""
    with _store_lock(uri):
        return _experiment_id(_client(uri), experiment)


def run_key(metrics_text: str) -> str:
    return hashlib.sha256(metrics_text.encode()).hexdigest()


def _tags(metrics: dict, out_dir: Path, key: str) -> dict:
    prov = metrics.get("provenance", {})
    tags = {RUN_KEY: key, "status": metrics["status"], "out_dir": str(out_dir),
            "mlflow.runName": f"{metrics['task']}/{metrics['arch']}/w{metrics['width']}/s{metrics['seed']}"}
    if metrics.get("error"):
        tags["error"] = str(metrics["error"])[:5000]
    if prov.get("git_commit"):
        tags["mlflow.source.git.commit"] = prov["git_commit"]
    if prov.get("out_dir") and prov["out_dir"] != str(out_dir):
        tags["source_out_dir"] = prov["out_dir"]
    for name, value in prov.items():
        if name == "out_dir":
            continue
        if isinstance(value, dict):
            tags.update({f"{name}.{k}": str(v) for k, v in value.items()})
        elif value is not None:
            tags[name] = str(value)
    return tags


def _metrics(metrics: dict, history: pd.DataFrame, now_ms: int) -> list:
    from mlflow.entities import Metric
    out = []
    for row in history.to_dict("records"):
        step = int(row["epoch"])
        out += [Metric(k, float(v), now_ms, step) for k, v in row.items()
                if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v)]
    summary = {f"last.{k}": v for k, v in (metrics.get("last") or {}).items()}
    summary.update({f"selected.{k}" if k.startswith(("train_", "test_")) else k: v
                    for k, v in metrics.items() if k not in ("last", "provenance", "width", "seed")})
    step = int(metrics.get("epochs") or 0)
    out += [Metric(k, float(v), now_ms, step) for k, v in summary.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return out


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
        return _log_run(Path(out_dir).resolve(), config, metrics_text, history_csv, uri)


def _log_run(out_dir: Path, config: config_mod.Config, metrics_text: str, history_csv: str, uri: str):
    from mlflow.entities import Param, RunStatus, RunTag
    metrics = json.loads(metrics_text)
    client = _client(uri)
    exp_id = _experiment_id(client, config.track.experiment)
    key = run_key(metrics_text)
    existing = client.search_runs([exp_id], filter_string=f"tags.{RUN_KEY} = '{key}'", max_results=1)
    if existing:
        return existing[0].info.run_id, False
    tags = _tags(metrics, out_dir, key)
    run = client.create_run(exp_id, tags={k: tags[k] for k in (RUN_KEY, "mlflow.runName")})
    run_id = run.info.run_id
    history = pd.read_csv(io.StringIO(history_csv)) if history_csv.strip() else pd.DataFrame({"epoch": []})
    try:
        params = [Param(k, str(v)) for k, v in config_mod.flatten(config).items()]
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        client.log_batch(run_id, params=params[:100], tags=tag_list[:100])
        values = _metrics(metrics, history, int(time.time() * 1000))
        for start in range(0, len(values), _BATCH):
            client.log_batch(run_id, metrics=values[start:start + _BATCH])
        client.log_text(run_id, metrics_text, "metrics.json")
        client.log_text(run_id, history_csv, "history.csv")
        client.log_text(run_id, config_mod.dump(config), "config.yaml")
        if config.track.figure and len(history):
            client.log_figure(run_id, _figure(history, metrics.get("selected_epoch")), "curves.png")
    except Exception:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        client.delete_run(run_id)
        raise
    status = RunStatus.FINISHED if metrics["status"] == "ok" else RunStatus.FAILED
    client.set_terminated(run_id, RunStatus.to_string(status))
    return run_id, True


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
