"""statemix.track: a real training logged into a temporary SQLite store, read back with MlflowClient and over
the REST API of a real `mlflow server`; `python -m statemix.track import` twice creates no duplicates."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from statemix import track, train
from statemix.generate import generate

EXPERIMENT = "statemix-test"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One real tiny training with tracking on, into tmp/mlflow.db; returns (uri, result root, out dir)."""
    root = tmp_path_factory.mktemp("track")
    for split, n in (("train", 32), ("test", 16)):
        generate("in-context-recall", split, root / "data" / split, seed=0, sets={"num_examples": n, "seq_len": 16})
    uri = f"sqlite:///{root / 'mlflow.db'}"
    out = root / "results" / "icr" / "lstm"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        code = train.main(["--task", "in-context-recall", "--arch", "lstm", "--width", "8", "--seed", "0",
                           "--data", str(root / "data"), "--out", str(out), "--set", "model.d_model=16",
                           "--set", "model.n_layers=1", "--set", "train.max_epochs=3", "--set", "train.batch_size=16",
                           "--set", f"track.experiment={EXPERIMENT}"])
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI") if old is None else os.environ.__setitem__("MLFLOW_TRACKING_URI", old)
    assert code == 0
    return uri, root / "results", out


def _runs(client):
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id])


def test_run_has_params_history_tags_and_artifacts(tracked):
    uri, _, out = tracked
    client = MlflowClient(uri)
    (run,) = _runs(client)
    metrics = json.loads((out / "metrics.json").read_text())
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.0005" and run.data.params["model.arch"] == "lstm"
    assert run.data.params["train.max_epochs"] == "3" and len(run.data.params) >= 30
    history = client.get_metric_history(run.info.run_id, "test_loss")
    expected = pd.read_csv(out / "history.csv")["test_loss"].tolist()
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(expected)
    assert run.data.metrics["selected.test_acc"] == pytest.approx(metrics["test_acc"])
    tags = run.data.tags
    assert tags["dataset_sha256"] == metrics["provenance"]["dataset_sha256"]
    assert tags["out_dir"] == str(out.resolve()) and tags["torch"] and tags["hardware"]
    assert tags[track.RUN_KEY] == track.run_key((out / "metrics.json").read_text())
    if metrics["provenance"]["git_commit"]:
        assert tags["git_commit"] == tags["mlflow.source.git.commit"] == metrics["provenance"]["git_commit"]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {"metrics.json", "history.csv", "config.yaml", "curves.png"}
    path = client.download_artifacts(run.info.run_id, "metrics.json", str(out.parent))
    assert Path(path).read_text() == (out / "metrics.json").read_text()


@pytest.mark.slow
def test_import_is_idempotent(tracked, tmp_path, capsys):
    uri, results, out = tracked
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run([sys.executable, "-m", "statemix.track", "import", str(results), "--uri", uri],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "imported 0 run(s); 1 already present" in done.stdout
    moved = tmp_path / "copied-from-gpu-machine"
    shutil.copytree(results, moved)
    fresh = f"sqlite:///{tmp_path / 'other.db'}"
    for expected in ("imported 1 run(s); 0 already present", "imported 0 run(s); 1 already present"):
        assert track.main(["import", str(moved), "--uri", fresh]) == 0
        assert expected in capsys.readouterr().out
    assert len(_runs(MlflowClient(uri))) == 1
    (run,) = _runs(MlflowClient(fresh))
    assert run.data.tags["out_dir"] == str((moved / out.relative_to(results)).resolve())
    assert run.data.tags["source_out_dir"] == str(out.resolve())


def test_broken_store_fails_the_run_before_training(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}")
    for split, n in (("train", 16), ("test", 16)):
        generate("in-context-recall", split, tmp_path / "data" / split, seed=0, sets={"num_examples": n, "seq_len": 8})
    with pytest.raises(Exception):
        train.run(train.parse_args(["--task", "in-context-recall", "--arch", "lstm", "--width", "8", "--data",
                                    str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--set",
                                    "model.d_model=16", "--set", "model.n_layers=1", "--set", "train.max_epochs=1"]))
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_server_serves_the_run(tracked, tmp_path):
    uri, _, out = tracked
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env=env, cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={EXPERIMENT}",
                                    timeout=10) as r:
            exp_id = json.load(r)["experiment"]["experiment_id"]
        body = json.dumps({"experiment_ids": [exp_id]}).encode()
        request = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            (run,) = json.load(r)["runs"]
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["out_dir"] == str(out.resolve()) and run["info"]["status"] == "FINISHED"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.slow
def test_parallel_runs_can_open_a_fresh_store(tmp_path):
    """Several trainings (Snakemake jobs) start at once on a store that does not exist yet."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    code = f"from statemix import track; track.check('parallel', 'sqlite:///{tmp_path / 'fresh.db'}')"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], logs
    assert MlflowClient(f"sqlite:///{tmp_path / 'fresh.db'}").get_experiment_by_name("parallel") is not None


def test_live_run_has_real_times_summaries_under_their_own_names_and_the_training_view(tracked):
    uri, _, out = tracked
    client = MlflowClient(uri)
    (run,) = _runs(client)
    metrics = json.loads((out / "metrics.json").read_text())
    assert client.get_experiment_by_name(EXPERIMENT).tags["mlflow.experimentKind"] == "custom_model_development"
    history = pd.read_csv(out / "history.csv")
    summaries = track.summaries(metrics)
    assert summaries and not set(summaries) & set(history.columns)
    assert {k: run.data.metrics[k] for k in summaries} == pytest.approx(summaries)
    assert run.data.metrics["total.steps"] == metrics["steps"] == history["steps"].sum()
    assert run.data.metrics["final.test_acc"] == pytest.approx(metrics["last"]["test_acc"])
    for key in ("steps", "eval_s", "train_s"):
        assert len(client.get_metric_history(run.info.run_id, key)) == len(history)
    seconds = (run.info.end_time - run.info.start_time) / 1000
    assert history["train_s"].sum() <= seconds <= metrics["wall_time_s"] + 5
    assert run.info.run_name == metrics["run_name"] == ("in-context-recall[frac_noise=0.0,noise_vocab_size=0,seq_len=16,vocab_size=16]"
                                                          "/lstm/norm=softmax/w8/s0")
