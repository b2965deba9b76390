"""CUDA-graphed training (needs a GPU): per architecture, graphed steps give the eager losses (bf16 tolerance),
resume after a kill like eager, and a batch worker's runs equal the same runs trained alone."""
import json

import pandas as pd
import pytest

from statemix import graphs, train, worker
from statemix.generate import generate

ARCHS = ["lru", "hlru-m2", "hlru-m4", "bdlru-m2", "bdlru-m4", "mamba2", "gdn", "lstm"]
OWN = ("lru", "hlru-m2", "hlru-m4", "bdlru-m2", "bdlru-m4", "lstm")
COMMON = ["--set", "model.d_model=32", "--set", "train.batch_size=16", "--set", "train.eval_batch_size=16",
          "--set", "track.enabled=false", "--set", "train.max_epochs=3", "--set", "train.early_stop_acc=0"]
TOL = dict(rel=3e-2, abs=3e-2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for split, n in (("train", 72), ("test", 40)):
        generate("in-context-recall", split, root / split, seed=0, sets={"num_examples": n, "seq_len": 32})
    return root


def _train(data, out, arch, graphs, seed=0, width=32, code=0):
    args = ["--task", "in-context-recall", "--arch", arch, "--width", str(width), "--seed", str(seed),
            "--data", str(data), "--out", str(out), *COMMON, "--set", f"train.cuda_graphs={graphs}"]
    assert train.main(args) == code
    if code == 0:
        return pd.read_csv(out / "history.csv"), json.loads((out / "metrics.json").read_text())
    return None


def _same(a, b, cols=("train_loss", "test_loss")):
    for col in cols:
        assert a[col].to_numpy() == pytest.approx(b[col].to_numpy(), **TOL), col


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ARCHS)
def test_graphed_steps_give_the_eager_losses(data, tmp_path, arch):
    eager, m_eager = _train(data, tmp_path / "eager", arch, "off")
    graphed, m_graphed = _train(data, tmp_path / "graphed", arch, "on")
    print(arch, m_graphed["step_path"], m_graphed["steps_per_s"], "eager", m_eager["steps_per_s"])
    assert m_eager["step_path"] == "eager"
    if arch in OWN:
        assert m_graphed["step_path"] == "cuda_graph"
    _same(eager, graphed)
    assert graphed["steps"].tolist() == eager["steps"].tolist() == [5, 5, 5]


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["hlru-m2", "bdlru-m4"])
def test_graphed_run_resumes_after_a_kill(data, tmp_path, monkeypatch, arch):
    whole, _ = _train(data, tmp_path / "whole", arch, "on")
    real, calls = train.Trainer.end_epoch, []

    def killed_after_two(self, *a):
        real(self, *a)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train.Trainer, "end_epoch", killed_after_two)
    _train(data, tmp_path / "cut", arch, "on", code=130)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    monkeypatch.setattr(train.Trainer, "end_epoch", real)
    resumed, metrics = _train(data, tmp_path / "cut", arch, "on")
    assert metrics["step_path"] == "cuda_graph" and len(resumed) == 3
    _same(whole, resumed, ("train_loss", "test_loss", "lr"))


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["bdlru-m4", "hlru-m2", "lstm", "mamba2"])
def test_worker_runs_equal_runs_alone_on_cuda(data, tmp_path, arch):
    """Seeds a and b stack (mamba2's as groups of heads of one SSD call), run c steps beside them on its stream."""
    wide, narrow = (64, 32) if arch == "mamba2" else (32, 16)
    runs = [(wide, 0, tmp_path / "a"), (wide, 1, tmp_path / "b"), (narrow, 2, tmp_path / "c")]
    args = ["--task", "in-context-recall", "--arch", arch, "--data", str(data), *COMMON]
    for width, seed, out in runs:
        args += ["--run", f"{width},{seed},{out}"]
    assert worker.main(args) == 0
    for width, seed, out in runs:
        alone, _ = _train(data, tmp_path / f"alone{seed}", arch, "on", seed, width)
        got = pd.read_csv(out / "history.csv")
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["step_path"] == "cuda_graph"
        _same(alone, got, ("train_loss", "test_loss", "lr"))


def _worker_equals_alone(data, tmp_path, runs, *extra):
    """One worker holding `runs` ((arch, width, seed) of any architectures), then each run alone (graphed, not
    compiled): equal losses and learning rates. Returns the worker runs' metrics."""
    args = ["--task", "in-context-recall", "--data", str(data), *COMMON, *extra]
    for arch, width, seed in runs:
        args += ["--run", f"{arch}:{width},{seed},{tmp_path / f'{arch}_{seed}'}"]
    assert worker.main(args) == 0
    metrics = []
    for arch, width, seed in runs:
        alone, _ = _train(data, tmp_path / f"alone_{arch}_{seed}", arch, "on", seed, width)
        got = pd.read_csv(tmp_path / f"{arch}_{seed}" / "history.csv")
        _same(alone, got, ("train_loss", "test_loss", "lr"))
        metrics.append(json.loads((tmp_path / f"{arch}_{seed}" / "metrics.json").read_text()))
    return metrics


@pytest.mark.gpu
def test_one_worker_for_every_architecture_equals_runs_alone_on_cuda(data, tmp_path):
    """The batch path: stacks and single runs of several architectures replayed side by side in one process."""
    _worker_equals_alone(data, tmp_path, [("bdlru-m4", 32, 0), ("bdlru-m4", 32, 1), ("hlru-m2", 16, 0),
                                          ("lstm", 32, 0), ("mamba2", 64, 0), ("gdn", 128, 0)])


@pytest.mark.gpu
def test_compiled_worker_equals_runs_alone_on_cuda(data, tmp_path):
    """train.compile=true in a worker (torch.compile under the captured step, several groups and widths in one
    process) gives the losses of the uncompiled runs alone."""
    runs = [("bdlru-m4", 32, 0), ("bdlru-m4", 32, 1), ("hlru-m2", 16, 0), ("lru", 16, 0), ("gdn", 128, 0),
            ("lstm", 32, 0), ("mamba2", 64, 0)]
    for m in _worker_equals_alone(data, tmp_path, runs, "--set", "train.compile=true"):
        assert m["step_path"] == "cuda_graph", m["step_path"]


@pytest.mark.gpu
@pytest.mark.parametrize("fails_in", ["train", "eval"])
def test_a_compiled_step_that_fails_falls_back_to_the_plain_graphed_model(data, tmp_path, monkeypatch, fails_in):
    """A compiled forward that raises while the training (or only the evaluation) step warms up: the run
    captures the uncompiled model instead, says so when it was the training step, and trains as a plain run."""
    import torch

    class Broken(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self._orig_mod = model

        def forward(self, x):
            if fails_in == "train" or not torch.is_grad_enabled():
                raise RuntimeError("planted compile failure")
            return self._orig_mod(x)

    monkeypatch.setattr(graphs, "compiled", Broken)
    plain, _ = _train(data, tmp_path / "plain", "bdlru-m2", "on")
    args = ["--task", "in-context-recall", "--arch", "bdlru-m2", "--data", str(data), *COMMON,
            "--set", "train.compile=true", "--run", f"32,0,{tmp_path / 'run'}"]
    assert worker.main(args) == 0
    path = json.loads((tmp_path / "run" / "metrics.json").read_text())["step_path"]
    if fails_in == "train":
        assert path.startswith("cuda_graph (compile failed: RuntimeError: planted compile failure"), path
    else:
        assert path == "cuda_graph", path
    _same(plain, pd.read_csv(tmp_path / "run" / "history.csv"), ("train_loss", "test_loss", "lr"))
