"""`python -m statemix.train` end to end on tiny CPU data: every task, resume after SIGKILL, NaN, bad params."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from statemix import config, train
from statemix.generate import generate

SRC = Path(__file__).resolve().parents[2] / "src"
TINY = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "train.batch_size=16",
        "--set", "train.eval_batch_size=32", "--set", "track.enabled=false"]
TASK_PARAMS = {
    "in-context-recall": {"seq_len": 16},
    "fuzzy-in-context-recall": {"seq_len": 32},
    "noisy-in-context-recall": {"seq_len": 16},
    "selective-copying": {"seq_len": 24, "num_tokens_to_copy": 4},
    "compression": {"seq_len": 8},
    "memorization": {"vocab_size": 32, "seq_len": 8},
    "permutation": {"group": "S3", "seq_len": 8},
    "parity": {"min_len": 3, "max_len": 8, "test_min_len": 8, "test_max_len": 12},
    "modular-counting": {"min_len": 3, "max_len": 8, "test_min_len": 8, "test_max_len": 12},
}
TIMING = ("train_s", "eval_s", "steps_per_s", "wall_time_s", "started_at", "ended_at", "peak_memory_bytes", "provenance")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for task, params in TASK_PARAMS.items():
        for split, n in (("train", 32), ("test", 16)):
            generate(task, split, root / task / split, seed=0, sets={"num_examples": n, **params})
    return root


def _args(data, out, task="in-context-recall", arch="lstm", width=8, *extra):
    return ["--task", task, "--arch", arch, "--width", str(width), "--seed", "0", "--data", str(data),
            "--out", str(out), *TINY, *extra]


@pytest.mark.parametrize("task", list(TASK_PARAMS))
def test_one_training_per_task(datasets, tmp_path, task):
    out = tmp_path / "run"
    assert train.main(_args(datasets / task, out, task, "lstm", 8, "--set", "train.max_epochs=2")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    history = pd.read_csv(out / "history.csv")
    assert metrics["status"] == "ok" and metrics["epochs"] == len(history) == 2
    assert metrics["backbone"] == ("autoencoder" if task == "compression" else "lm")
    assert metrics["selected_epoch"] == history["test_loss"].idxmin() + 1
    assert metrics["test_loss"] == pytest.approx(history["test_loss"].min(), rel=1e-6)
    assert 0 <= metrics["test_acc"] <= 1 and metrics["params_total"] > metrics["params_mixer_layer"] > 0
    cfg = config.from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    assert (cfg.data.task, cfg.model.arch, cfg.model.width, cfg.train.max_epochs) == (task, "lstm", 8, 2)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert {"model", "optimizer", "scheduler", "rng", "best"} <= set(state) and state["epoch"] == 2


def test_mixer_options_reach_the_layers(datasets, tmp_path):
    args = _args(datasets / "in-context-recall", tmp_path / "run", "in-context-recall", "hlru-m2", 4,
                 "--set", "train.max_epochs=1", "--set", "model.backend=reference", "--set", "model.norm=sigmoid")
    assert train.main(args) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["state_size"] == 4
    cfg = train.resolve_config(train.parse_args(args))
    mixers = [m for m in train.make_model(cfg, 16, 16, "lm").modules() if type(m).__name__ == "HLRU"]
    assert mixers and all((m.norm, m.backend) == ("sigmoid", "reference") for m in mixers)


def _subprocess(args):
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "statemix.train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkill_and_resume_gives_bitwise_equal_metrics(datasets, tmp_path):
    data = datasets / "in-context-recall"
    extra = ("--set", "train.max_epochs=25", "--set", "train.early_stop_acc=0", "--set", "train.lr=0.003")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train.main(_args(data, tmp_path / "whole", "in-context-recall", "lstm", 8, *extra)) == 0
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "killed"
    proc = _subprocess(_args(data, out, "in-context-recall", "lstm", 8, *extra))
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(out / "checkpoint.pt", weights_only=False)["epoch"]
    assert 0 < done < 25 and not (out / "metrics.json").exists(), "the kill must land mid-run"
    resumed = _subprocess(_args(data, out, "in-context-recall", "lstm", 8, *extra))
    log = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, log
    whole, killed = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "killed"))
    assert {k: v for k, v in killed.items() if k not in TIMING} == {k: v for k, v in whole.items() if k not in TIMING}
    columns = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv")[columns],
                                  pd.read_csv(tmp_path / "whole" / "history.csv")[columns], check_exact=True)
    before = (out / "metrics.json").read_text()
    assert train.main(_args(data, out, "in-context-recall", "lstm", 8, *extra)) == 0
    assert (out / "metrics.json").read_text() == before


def test_nan_loss_fails_the_run(datasets, tmp_path, capsys):
    out = tmp_path / "run"
    code = train.main(_args(datasets / "in-context-recall", out, "in-context-recall", "lstm", 8,
                            "--set", "train.lr=1e30", "--set", "train.max_epochs=5"))
    assert code == train.EXIT_DIVERGED
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "NaN" in metrics["error"]
    assert "test_acc" not in metrics and "last" not in metrics
    assert "NaN" in capsys.readouterr().err


@pytest.mark.parametrize("extra, named", [
    (("--set", "train.lr_max=1"), "train.lr_max"),
    (("--set", "train.batch_size=big"), "train.batch_size"),
    (("--set", "model.norm=softplus"), "model.norm"),
    (("--set", "model.norm=tanh"), "model.norm"),
    (("--task", "copying"), "--task"),
    (("--arch", "transformer"), "--arch"),
    (("--task", "compression"), "compression"),
    (("--width", "eight"), "model.width"),
])
def test_bad_params_fail_before_training(datasets, tmp_path, capsys, extra, named):
    out = tmp_path / "run"
    code = train.main(_args(datasets / "in-context-recall", out) + list(extra))
    assert code == 2
    assert named in capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()
