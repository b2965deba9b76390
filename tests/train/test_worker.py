"""`python -m statemix.worker` on the CPU (eager, fp32): its runs equal the same runs trained alone; grouping,
per-run early stop and resume after a kill. 40 train rows in batches of 16: the last batch is partial."""
import json

import pandas as pd
import pytest
import torch
from torch import nn

from statemix import graphs, stack, train, worker
from statemix.generate import generate
from statemix.models import build_model

TINY = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "train.batch_size=16",
        "--set", "train.eval_batch_size=16", "--set", "track.enabled=false", "--set", "train.max_epochs=3",
        "--set", "train.early_stop_acc=0"]
LOSSES = ["train_loss", "test_loss", "train_acc", "test_acc"]


def _make(root, seed):
    for split, n in (("train", 40), ("test", 24)):
        generate("in-context-recall", split, root / split, seed=seed, sets={"num_examples": n, "seq_len": 16})
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("data"), 0)


@pytest.fixture(scope="module")
def data_seed1(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("data1"), 1)


def _alone(data, out, arch, width, seed, *extra):
    args = ["--task", "in-context-recall", "--arch", arch, "--width", str(width), "--seed", str(seed),
            "--data", str(data), "--out", str(out), *TINY, *extra]
    assert train.main(args) == 0
    return pd.read_csv(out / "history.csv"), json.loads((out / "metrics.json").read_text())


def _worker(data, arch, runs, *extra):
    args = ["--task", "in-context-recall", "--arch", arch, "--data", str(data), *TINY, *extra]
    for run in runs:
        args += ["--run", ",".join(map(str, run))]
    return worker.main(args)


@pytest.mark.parametrize("arch, wide, narrow", [("bdlru-m2", 8, 4), ("lstm", 8, 4), ("gdn", 8, 4),
                                                 ("mamba2", 64, 32)])
def test_worker_runs_equal_runs_trained_alone(data, data_seed1, tmp_path, arch, wide, narrow):
    """Seeds 0 and 1 (own datasets, as the pipeline's per-seed data) stack; the narrower run steps beside them."""
    runs = [(wide, 0, tmp_path / "a", data), (wide, 1, tmp_path / "b", data_seed1), (narrow, 2, tmp_path / "c", data)]
    assert _worker(data, arch, runs, "--set", "train.grad_clip=0.05") == 0
    for width, seed, out, folder in runs:
        history, metrics = _alone(folder, tmp_path / f"alone{width}_{seed}", arch, width, seed,
                                  "--set", "train.grad_clip=0.05")
        got = pd.read_csv(out / "history.csv")
        mine = json.loads((out / "metrics.json").read_text())
        assert len(got) == 3 and mine["status"] == "ok" and mine["epochs"] == 3
        for col in LOSSES + ["lr", "steps"]:
            assert got[col].to_numpy() == pytest.approx(history[col].to_numpy(), rel=1e-5, abs=1e-6), col
        assert mine["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-5)
        assert mine["stacked_runs"] == (2 if width == wide else 1)


def test_one_worker_trains_several_architectures(data, data_seed1, tmp_path):
    """Runs name their architecture (ARCH:WIDTH,...): the bdlru-m2 seeds stack, an lstm and a mamba2 run beside
    them, and each equals its run alone."""
    runs = [("bdlru-m2", 8, 0, tmp_path / "b0", data_seed1), ("bdlru-m2", 8, 1, tmp_path / "b1", data),
            ("lstm", 8, 0, tmp_path / "l0", data), ("mamba2", 32, 0, tmp_path / "m0", data)]
    args = ["--task", "in-context-recall", *TINY]
    for arch, width, seed, out, folder in runs:
        args += ["--run", f"{arch}:{width},{seed},{out},{folder}"]
    assert worker.main(args) == 0
    for arch, width, seed, out, folder in runs:
        history, _ = _alone(folder, tmp_path / f"alone_{arch}_{seed}", arch, width, seed)
        mine = json.loads((out / "metrics.json").read_text())
        assert mine["arch"] == arch and mine["stacked_runs"] == (2 if arch == "bdlru-m2" else 1)
        got = pd.read_csv(out / "history.csv")
        for col in LOSSES:
            assert got[col].to_numpy() == pytest.approx(history[col].to_numpy(), rel=1e-5, abs=1e-6), col


def test_a_group_that_raises_leaves_the_others_finished_and_itself_resumable(data, tmp_path, monkeypatch, capsys):
    """An LSTM group breaking in its second epoch (as cuDNN refused the stacked LSTM on the H200) ends only its
    own runs: unfinished, resumable; the bdlru-m2 runs beside it finish and equal runs alone; exit 1."""
    runs = [("bdlru-m2", 8, 0, tmp_path / "b0"), ("lstm", 8, 0, tmp_path / "l0"), ("lstm", 8, 1, tmp_path / "l1")]
    real_step, steps = worker.Group.step, []

    def lstm_breaks(self, i):
        if self.jobs[0].cfg.model.arch == "lstm":
            steps.append(i)
            if len(steps) > 4:
                raise RuntimeError("Weight scalar types do not match.")
        real_step(self, i)

    monkeypatch.setattr(worker.Group, "step", lstm_breaks)
    args = ["--task", "in-context-recall", "--data", str(data), *TINY]
    args += [x for arch, w, s, out in runs for x in ("--run", f"{arch}:{w},{s},{out}")]
    assert worker.main(args) == 1
    assert "left unfinished (resumable)" in capsys.readouterr().err
    history, _ = _alone(data, tmp_path / "alone_b", "bdlru-m2", 8, 0)
    got = pd.read_csv(runs[0][3] / "history.csv")
    assert got["test_loss"].to_numpy() == pytest.approx(history["test_loss"].to_numpy(), rel=1e-5)
    assert not any((out / "metrics.json").exists() for *_, out in runs[1:])
    assert all(len(pd.read_csv(out / "history.csv")) == 1 for *_, out in runs[1:])
    monkeypatch.setattr(worker.Group, "step", real_step)
    assert worker.main(args) == 0
    for _, w, s, out in runs[1:]:
        history, _ = _alone(data, tmp_path / f"alone_l{s}", "lstm", w, s)
        got = pd.read_csv(out / "history.csv")
        assert got["test_loss"].to_numpy() == pytest.approx(history["test_loss"].to_numpy(), rel=1e-5)


def test_each_round_reports_its_group_steps_and_bookkeeping(data, tmp_path, capsys):
    """Two groups (a stack of 2 lru runs, one bdlru-m2 run), 3 epochs of 3 batches: one line per round with 2 x 3
    group-steps, and checkpoint time that the trainers measured."""
    runs = [("lru", 8, 0, tmp_path / "a"), ("lru", 8, 1, tmp_path / "b"), ("bdlru-m2", 8, 0, tmp_path / "c")]
    args = ["--task", "in-context-recall", "--data", str(data), *TINY]
    args += [x for arch, w, s, out in runs for x in ("--run", f"{arch}:{w},{s},{out}")]
    assert worker.main(args) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("statemix.worker: round")]
    assert [ln.split(":")[1].strip() for ln in lines] == ["round 1", "round 2", "round 3"]
    assert all("2 groups, 6 group-steps in" in ln for ln in lines)
    assert all(float(ln.rsplit("(checkpoints ", 1)[1].split(" s)")[0]) > 0 for ln in lines)


def test_a_run_without_an_architecture_is_refused(data, tmp_path, capsys):
    assert worker.main(["--task", "in-context-recall", "--data", str(data), "--run", f"8,0,{tmp_path}"]) == 2
    assert "names no ARCH" in capsys.readouterr().err


def test_grouping_stacks_seeds_of_one_width_only(data, tmp_path):
    jobs = [train.prepare(train.parse_args(["--task", "in-context-recall", "--arch", arch, "--width", str(w),
                                            "--seed", str(s), "--data", str(data), "--out",
                                            str(tmp_path / f"{arch}{w}{s}"), *TINY]), graphed=False)
            for arch, w, s in (("lru", 8, 0), ("lru", 8, 1), ("lru", 4, 0), ("lru-complex", 8, 0),
                               ("lru-complex", 8, 1), ("mamba2", 32, 0), ("mamba2", 32, 1))]
    groups = worker.build_groups(jobs, torch.device("cpu"), [])
    assert sorted(g.K for g in groups) == [1, 1, 1, 2, 2]
    assert stack.unstackable(jobs[3].model) is not None and stack.unstackable(jobs[0].model) is None
    assert stack.unstackable(jobs[5].model) is None


def test_a_stopped_run_is_final_and_its_stack_mate_unaffected(data, tmp_path, monkeypatch):
    runs = [(8, 0, tmp_path / "a"), (8, 1, tmp_path / "b")]
    real = train.Trainer._stop_reason

    def stop_a_early(self):
        return "early_stop_acc" if self.out == runs[0][2] else real(self)

    monkeypatch.setattr(train.Trainer, "_stop_reason", stop_a_early)
    assert _worker(data, "lru", runs) == 0
    monkeypatch.setattr(train.Trainer, "_stop_reason", real)
    a = json.loads((runs[0][2] / "metrics.json").read_text())
    assert a["epochs"] == 1 and a["stopped"] == "early_stop_acc" and len(pd.read_csv(runs[0][2] / "history.csv")) == 1
    history, _ = _alone(data, tmp_path / "alone", "lru", 8, 1)
    got = pd.read_csv(runs[1][2] / "history.csv")
    assert got["test_loss"].to_numpy() == pytest.approx(history["test_loss"].to_numpy(), rel=1e-5)


def test_resume_after_kill_loses_at_most_one_epoch(data, tmp_path, monkeypatch):
    runs = [(8, 0, tmp_path / "a"), (8, 1, tmp_path / "b")]
    real_end, calls = worker.Group.end, []

    def killed_in_epoch_two(self, train_s):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_end(self, train_s)

    monkeypatch.setattr(worker.Group, "end", killed_in_epoch_two)
    assert _worker(data, "hlru-m2", runs) == 130
    assert all(len(pd.read_csv(out / "history.csv")) == 1 and not (out / "metrics.json").exists()
               for _, _, out in runs)
    monkeypatch.setattr(worker.Group, "end", real_end)
    assert _worker(data, "hlru-m2", runs) == 0
    for width, seed, out in runs:
        history, _ = _alone(data, tmp_path / f"alone{seed}", "hlru-m2", width, seed)
        got = pd.read_csv(out / "history.csv")
        assert got["test_loss"].to_numpy() == pytest.approx(history["test_loss"].to_numpy(), rel=1e-5)


@pytest.mark.parametrize("arch, width, backbone", [
    ("bdlru-m4", 8, "lm"), ("bdlru-m4", 8, "autoencoder"), ("lstm", 8, "lm"), ("mamba2", 32, "lm"),
    ("gdn", 128, "lm"), ("dproduct", 128, "autoencoder")])
def test_stacked_model_matches_each_model(arch, width, backbone):
    """The compression AutoEncoder stacks too (each run reads its own learned position table), the LSTM as one
    LSTM with block-diagonal weights, and the baselines with per-head parameters (Mamba2, Gated DeltaNet,
    DeltaProduct) with each run's parameters on its own rows (Mamba2's runs scan as groups of heads)."""
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(arch, width, 11, 12, d_model=16, n_layers=1, backbone=backbone))
    assert stack.unstackable(models[0]) is None
    stacked = stack.stack_models(models)
    x = torch.randint(0, 11, (3, 5, 12))
    out = stacked(x.flatten(0, 1)).view(3, 5, 12, -1)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(x[k]), rtol=1e-6, atol=1e-6)
        assert all(torch.equal(v, m.state_dict()[name]) for name, v in stack.unstack_state(stacked, k).items())
    out.square().sum().backward()
    for m in models:
        m(x[models.index(m)]).square().sum().backward()
    grads = dict(stacked.named_parameters())
    for k, m in enumerate(models):
        for name, p in m.named_parameters():
            torch.testing.assert_close(grads[name].grad[k], p.grad, rtol=1e-5, atol=1e-6)


def test_bad_cuda_graphs_value_is_named():
    with pytest.raises(ValueError, match="train.cuda_graphs"):
        graphs.use_graphs("sometimes", torch.device("cpu"))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        graphs.use_graphs("on", torch.device("cpu"))


def test_stacked_lstm_carries_each_runs_state_and_refuses_what_it_cannot_stack():
    torch.manual_seed(0)
    K, B, T, D, H = 3, 2, 5, 4, 6
    layers = [nn.LSTM(D, H, batch_first=True) for _ in range(K)]
    x, h0, c0 = torch.randn(K * B, T, D), torch.randn(1, K * B, H), torch.randn(1, K * B, H)
    out, (h, c) = stack.StackedLSTM(layers)(x, (h0, c0))
    for k, layer in enumerate(layers):
        rows = slice(k * B, (k + 1) * B)
        want, (wh, wc) = layer(x[rows], (h0[:, rows], c0[:, rows]))
        torch.testing.assert_close(out[rows], want)
        torch.testing.assert_close(h[:, rows], wh)
        torch.testing.assert_close(c[:, rows], wc)
    with pytest.raises(ValueError, match="one-layer"):
        stack.StackedLSTM([nn.LSTM(D, H, num_layers=2, batch_first=True)])
    assert "one-layer" in stack.unstackable(nn.Sequential(nn.LSTM(D, H, num_layers=2, batch_first=True)))


def test_only_depthwise_convolutions_stack():
    with pytest.raises(ValueError, match="depthwise"):
        stack.StackedConv1d([nn.Conv1d(4, 4, 3, groups=2)])
    assert "not depthwise" in stack.unstackable(nn.Sequential(nn.Conv1d(4, 4, 3)))
