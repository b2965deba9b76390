"""Live MLflow tracking: 16 trainings logging at once into one SQLite store lose nothing and never fail on
"database is locked"; a run is RUNNING while it trains and KILLED after SIGTERM; a run left RUNNING by a
SIGKILL is marked KILLED when its folder trains again."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from statemix import config, track
from statemix.generate import generate

pytestmark = pytest.mark.slow  # 16 concurrent trainings and signalled processes: `make test-all` runs it, `make test` skips it

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
EPOCHS = 12
WORKER = """
import json, sys, time
from types import SimpleNamespace
from statemix import config, track
uri, i, go = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
cfg = config.load(overrides=[f"track.uri={uri}", "track.experiment=concurrent", "track.figure=false"])
track.check("concurrent", uri)
live = track.LiveRun(f"{sys.argv[4]}/run{i}", cfg, f"run{i}", "fp")
time.sleep(max(0.0, go - time.time()))
live.start(SimpleNamespace(history=[]))
for e in range(1, %d + 1):
    live.epoch({"epoch": e, "train_loss": 1.0 / e, "test_acc": e / 100 + i, "steps": 4})
metrics = {"status": "ok", "task": "t", "arch": "a", "width": 1, "seed": i, "run_name": f"run{i}", "epochs": %d,
           "test_acc": float(i), "steps": 4 * %d, "last": {"test_acc": float(i)}}
live.finish(json.dumps(metrics), "epoch,train_loss\\n1,1.0\\n")
""" % (EPOCHS, EPOCHS, EPOCHS)


def test_sixteen_concurrent_trainings_log_into_one_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = time.time() + 25  # every worker has imported mlflow and opened the store before any starts logging
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, uri, str(i), str(go), str(tmp_path)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(16)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 16, "\n".join(logs)
    assert not any("locked" in log for log in logs)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("concurrent")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    found = client.search_runs([exp.experiment_id], max_results=100)
    assert sorted(r.info.run_name for r in found) == sorted(f"run{i}" for i in range(16))
    for run in found:
        i = int(run.info.run_name[3:])
        assert run.info.status == "FINISHED" and run.data.metrics["selected.test_acc"] == i
        history = client.get_metric_history(run.info.run_id, "test_acc")
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
        assert run.data.metrics["total.steps"] == 4 * EPOCHS
        assert len(client.get_metric_history(run.info.run_id, "steps")) == EPOCHS


def test_run_is_running_while_training_and_killed_by_sigterm(tmp_path):
    for split, n in (("train", 512), ("test", 64)):
        generate("in-context-recall", split, tmp_path / "data" / split, seed=0, sets={"num_examples": n, "seq_len": 32})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "statemix.train", "--task", "in-context-recall", "--arch", "lstm", "--width", "16",
         "--data", str(tmp_path / "data"), "--out", str(out), "--set", "model.d_model=16", "--set",
         "model.n_layers=1", "--set", "train.max_epochs=5000", "--set", "train.early_stop_acc=0", "--set",
         f"track.uri={uri}", "--set", "track.experiment=live"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 2/"):
            break
    assert proc.poll() is None, "".join(lines)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("live")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "RUNNING" and run.info.end_time in (None, 0)
    assert len(client.get_metric_history(run.info.run_id, "test_loss")) >= 1
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, "".join(lines) + rest
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED" and run.info.end_time > run.info.start_time
    assert not (out / "metrics.json").exists() and "rerun the same command to resume" in rest


def test_a_run_left_running_by_sigkill_is_marked_killed_when_its_folder_trains_again(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = config.load(overrides=[f"track.uri={uri}", "track.experiment=again"])
    first = track.LiveRun(tmp_path / "run", cfg, "r", "fp")
    first.start(SimpleNamespace(history=[]))
    other = track.LiveRun(tmp_path / "other", cfg, "o", "fp")
    other.start(SimpleNamespace(history=[]))
    second = track.LiveRun(tmp_path / "run", cfg, "r", "fp")
    second.start(SimpleNamespace(history=[{"epoch": 1, "test_loss": 2.0}, {"epoch": 2, "test_loss": 1.5}]))
    client = MlflowClient(uri)
    status = {rid: client.get_run(rid).info.status for rid in (first.run_id, other.run_id, second.run_id)}
    assert status == {first.run_id: "KILLED", other.run_id: "RUNNING", second.run_id: "RUNNING"}
    history = client.get_metric_history(second.run_id, "test_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 2.0), (2, 1.5)]
    assert json.loads(json.dumps(client.get_run(second.run_id).data.tags))["resumed_at_epoch"] == "2"
