"""Run identity: a changed code, config or dataset never resumes or keeps an old result; checkpoints load with
weights_only=True; each epoch prints a line and the run ends with a summary line."""
import json
import pickle
import shutil

import pandas as pd
import pytest
import torch

from statemix import config, grids, runs, train
from statemix.generate import generate

TINY = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "train.batch_size=16",
        "--set", "train.eval_batch_size=32", "--set", "track.enabled=false", "--set", "train.early_stop_acc=0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for split, n in (("train", 32), ("test", 16)):
        generate("permutation", split, root / split, seed=0, sets={"num_examples": n, "group": "S3", "seq_len": 8})
    return root


def _train(data, out, *extra):
    return train.main(["--task", "permutation", "--arch", "lstm", "--width", "8", "--seed", "0", "--data", str(data),
                       "--out", str(out), *TINY, *extra])


def _stale(out):
    return sorted(out.parent.glob(f"{out.name}.stale-*"))


def test_code_hash_covers_the_numbers_and_working_tree_edits(tmp_path):
    for name in grids.matching(grids.FINGERPRINT_CODE + ["src/statemix/track.py"]):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(grids.ROOT / name, tmp_path / name)
    before = runs.code_sha256(tmp_path)
    assert before == runs.code_sha256(grids.ROOT)
    track = tmp_path / "src/statemix/track.py"
    track.write_text(track.read_text() + "\n# logging only\n")
    assert runs.code_sha256(tmp_path) == before, "tracking code does not change a run's numbers"
    common = tmp_path / "src/statemix/mixers/recurrent.py"
    common.write_text(common.read_text().replace("INIT_STD = 0.02", "INIT_STD = 0.03"))
    assert "INIT_STD = 0.03" in common.read_text()
    assert runs.code_sha256(tmp_path) != before


def test_code_change_retrains_a_finished_run(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert _train(data, out, "--set", "train.max_epochs=2") == 0
    old = json.loads((out / "metrics.json").read_text())
    assert _train(data, out, "--set", "train.max_epochs=2") == 0
    assert "nothing to do" in capsys.readouterr().out
    real = runs.code_sha256()
    monkeypatch.setattr(runs, "code_sha256", lambda root=grids.ROOT: "edited-" + real)
    (out / "metrics.json").unlink()  # what Snakemake does before rerunning a job whose code input changed
    assert _train(data, out, "--set", "train.max_epochs=2") == 0
    log = capsys.readouterr().out
    assert "the code changed" in log and "training afresh" in log and "resuming" not in log, log
    new = json.loads((out / "metrics.json").read_text())
    assert new["fingerprint"]["code_sha256"] == "edited-" + real != old["fingerprint"]["code_sha256"]
    (aside,) = _stale(out)
    assert (aside / "checkpoint.pt").exists() and not (aside / "metrics.json").exists()
    # a finished result with the old fingerprint is redone too, not reported under the new provenance
    monkeypatch.setattr(runs, "code_sha256", lambda root=grids.ROOT: "edited-again")
    assert _train(data, out, "--set", "train.max_epochs=2") == 0
    assert json.loads((out / "metrics.json").read_text())["fingerprint"]["code_sha256"] == "edited-again"
    assert len(_stale(out)) == 2 and any((p / "metrics.json").exists() for p in _stale(out))


def test_params_change_starts_afresh_and_keeps_the_old_folder(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data, out, "--set", "train.max_epochs=1") == 0
    first = (out / "metrics.json").read_text()
    assert _train(data, out, "--set", "train.max_epochs=2") == 0
    assert "train.max_epochs: 1 -> 2" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and len(pd.read_csv(out / "history.csv")) == 2
    (aside,) = _stale(out)
    assert (aside / "metrics.json").read_text() == first
    assert _train(data, out, "--set", "train.max_epochs=3", "--stale", "delete") == 0
    assert len(_stale(out)) == 1 and json.loads((out / "metrics.json").read_text())["epochs"] == 3


def test_unfinished_run_resumes_only_with_the_same_fingerprint(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data, out, "--set", "train.max_epochs=3") == 0
    (out / "metrics.json").unlink()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert _train(data, out, "--set", "train.max_epochs=3") == 0
    assert "resuming" in capsys.readouterr().out and not _stale(out)
    runs.save_checkpoint(out / "checkpoint.pt", {**state, "fingerprint": {**state["fingerprint"], "sha256": "x"}})
    (out / "metrics.json").unlink()
    assert _train(data, out, "--set", "train.max_epochs=3") == 0
    assert "training afresh" in capsys.readouterr().out and len(_stale(out)) == 1


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoints_load_weights_only_and_foreign_pickles_are_refused(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data, out, "--set", "train.max_epochs=2") == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "rng", "best", "history", "fingerprint"} <= set(state)
    assert state["epoch"] == 2 and isinstance(state["rng"]["numpy"]["key"], torch.Tensor)
    bad = tmp_path / "bad.pt"
    torch.save({"fingerprint": Evil()}, bad)
    with pytest.raises(ValueError, match="bad.pt.*weights_only=True"):
        runs.load_checkpoint(bad)
    assert "pwned" not in capsys.readouterr().out
    (out / "metrics.json").unlink()
    shutil.copy(bad, out / "checkpoint.pt")
    assert _train(data, out, "--set", "train.max_epochs=2") == 0
    assert "cannot be read safely" in capsys.readouterr().out and "pwned" not in capsys.readouterr().out


def test_rng_state_roundtrips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    runs.save_checkpoint(tmp_path / "c.pt", {"rng": runs.rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    runs.set_rng_state(runs.load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and (expected[1] == got[1]).all() and expected[2] == got[2]


def test_each_epoch_prints_a_line_and_the_run_a_summary(data, tmp_path, capsys):
    assert _train(data, tmp_path / "run", "--set", "train.max_epochs=3") == 0
    lines = capsys.readouterr().out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    for line, row in zip(epochs, history.itertuples()):
        assert f"test loss {row.test_loss:.4f} acc {row.test_acc:.4f}" in line and "steps/s" in line
        assert "ETA <=" in line
    assert "ETA <=0:00:00" in epochs[-1]
    assert lines[-1].startswith("statemix.train: ") and "done, 3 epoch(s)" in lines[-1]


def test_terminal_runs_show_a_progress_bar(capsys):
    from types import SimpleNamespace

    from statemix.progress import EpochPrinter
    printer = EpochPrinter(max_epochs=2, steps_per_epoch=5, bar=True)
    printer.start(SimpleNamespace(epoch=0))
    for _ in range(5):
        printer.step()
    printer.epoch({"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5, "lr": 1e-3,
                   "steps": 5, "train_s": 0.5})
    printer.close()
    captured = capsys.readouterr()
    assert "5/10" in captured.err and captured.out.startswith("epoch 1/2")


def test_run_identity_leaves_out_how_a_run_executes_but_not_what_it_computes():
    """A checkpoint taken uncompiled resumes compiled (train.compile is in config.NOT_IDENTITY); lr is not."""
    manifests = {"train": {"sha256": "a"}, "test": {"sha256": "b"}}

    def sha(*sets):
        cfg = config.load(overrides=["model.arch=lru", "data.task=S3", *sets])
        return runs.fingerprint(cfg, manifests, torch.device("cpu"))["sha256"]

    base = sha()
    assert sha("train.compile=true") == sha("train.checkpoint_every=3") == base
    assert sha("train.lr=0.5") != base
