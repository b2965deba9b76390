"""statemix.trainer on a tiny stand-in model: overfitting, epoch selection, early stopping, divergence."""
import math

import pandas as pd
import pytest
import torch

from statemix import config
from statemix.trainer import CHECKPOINT, HISTORY, Diverged, Split, Trainer


class TinyLM(torch.nn.Module):
    """Embedding -> GRU -> Linear: tokens [B, T] -> logits [B, T, V]; optionally NaN in training mode after
    `nan_after` training calls (its weights stay finite, so evaluating an earlier state stays finite)."""

    def __init__(self, vocab: int, d: int = 32, nan_after: int | None = None):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.rnn = torch.nn.GRU(d, d, batch_first=True)
        self.head = torch.nn.Linear(d, vocab)
        self.nan_after, self.calls = nan_after, 0

    def forward(self, x):
        self.calls += self.training
        y = self.head(self.rnn(self.embed(x))[0])
        if self.nan_after is not None and self.training and self.calls > self.nan_after:
            y = y * float("nan")
        return y


def _split(n, t, vocab, seed, scored=0.7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(vocab, (n, t), generator=g)
    y = torch.randint(vocab, (n, t), generator=g)
    y[torch.rand(n, t, generator=g) > scored] = -100
    return Split(x, y)


def _trainer(tmp_path, model, train, test, vocab, *sets):
    cfg = config.load(overrides=["train.device=cpu", "train.batch_size=8", "train.eval_batch_size=8", *sets])
    torch.manual_seed(0)
    return Trainer(model, train, test, vocab, cfg.train, tmp_path, torch.device("cpu"), {"test": 1})


def test_overfits_one_small_batch(tmp_path):
    vocab, data = 10, _split(8, 6, 10, seed=1)
    data.inputs[:, 0] = torch.arange(8)
    trainer = _trainer(tmp_path, TinyLM(vocab), data, data, vocab, "train.lr=0.03", "train.max_epochs=150")
    result = trainer.fit()
    assert result["stopped"] == "early_stop_acc"
    assert result["selected"]["test_acc"] >= 0.999 and result["last"]["train_acc_micro"] == 1.0
    assert trainer.history[-1]["train_loss"] < 0.5 * trainer.history[0]["train_loss"]
    saved = pd.read_csv(tmp_path / HISTORY)
    assert len(saved) == result["epochs"] == trainer.epoch and (tmp_path / CHECKPOINT).exists()


def test_reports_best_test_perplexity_epoch(tmp_path):
    vocab = 8
    train, test = _split(16, 8, vocab, seed=2), _split(16, 8, vocab, seed=3)
    torch.manual_seed(0)
    trainer = _trainer(tmp_path, TinyLM(vocab), train, test, vocab, "train.lr=0.02", "train.max_epochs=12",
                       "train.schedule=constant", "train.early_stop_acc=0")
    result = trainer.fit()
    losses = [row["test_loss"] for row in trainer.history]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert result["stopped"] == "max_epochs" and result["epochs"] == 12
    assert best < 11, "random test targets should make test loss rise once the model memorises train"
    assert result["selected"]["epoch"] == best + 1
    assert result["selected"]["test_loss"] == pytest.approx(losses[best], rel=1e-9)
    assert result["last"]["test_loss"] == pytest.approx(losses[-1], rel=1e-9)
    assert result["selected"]["test_ppl"] == pytest.approx(math.exp(losses[best]), rel=1e-9)


def test_cosine_schedule_reaches_min_lr(tmp_path):
    vocab, data = 5, _split(8, 4, 5, seed=4)
    trainer = _trainer(tmp_path, TinyLM(vocab, d=8), data, data, vocab, "train.max_epochs=4",
                       "train.early_stop_acc=0", "train.lr=0.01", "train.min_lr=0.001")
    trainer.fit()
    lrs = [row["lr"] for row in trainer.history]
    expected = [0.001 + 0.5 * (0.01 - 0.001) * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert lrs == pytest.approx(expected)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)


def test_patience_stops_when_accuracy_stalls(tmp_path):
    vocab = 6
    train, test = _split(8, 6, vocab, seed=5), _split(8, 6, vocab, seed=6)
    trainer = _trainer(tmp_path, TinyLM(vocab, d=8), train, test, vocab, "train.max_epochs=60",
                       "train.patience=3", "train.lr=1e-12")
    result = trainer.fit()
    assert result["stopped"] == "patience" and result["epochs"] == 4


def test_nan_after_good_epochs_reports_the_best_epoch_before_it(tmp_path):
    """MAD keeps its best-perplexity checkpoint when a run later diverges: stopped 'diverged', best epoch reported."""
    vocab, data = 6, _split(16, 6, 6, seed=7)  # batch 8: 2 steps per epoch, so the NaN comes in epoch 3
    trainer = _trainer(tmp_path, TinyLM(vocab, nan_after=5), data, data, vocab, "train.max_epochs=10",
                       "train.early_stop_acc=0")
    result = trainer.fit()
    assert result["stopped"] == "diverged" and "epoch 3" in result["diverged"]
    assert trainer.epoch == result["epochs"] == 2 and len(trainer.history) == 2
    best = min((row["test_loss"], row["epoch"]) for row in trainer.history)
    assert result["selected"]["epoch"] == best[1] and math.isfinite(result["selected"]["test_loss"])
    assert result["last"]["epoch"] == 2 and result["last"]["test_acc"] == trainer.history[-1]["test_acc"]
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert saved["epoch"] == 2 and saved["stopped"] == "diverged"
    again = _trainer(tmp_path, TinyLM(vocab, nan_after=0), data, data, vocab, "train.max_epochs=10",
                     "train.early_stop_acc=0")
    resumed = again.fit()
    assert resumed["stopped"] == "diverged" and resumed["selected"]["epoch"] == result["selected"]["epoch"]


def test_nan_in_the_first_epoch_raises(tmp_path):
    vocab, data = 6, _split(16, 6, 6, seed=7)
    trainer = _trainer(tmp_path, TinyLM(vocab, nan_after=0), data, data, vocab, "train.max_epochs=10")
    with pytest.raises(Diverged, match="epoch 1"):
        trainer.fit()


def test_default_schedule_is_cosine_over_200_epochs(tmp_path):
    """MAD's protocol by default: cosine from lr to min_lr with T_max = max_epochs = 200, stepped per epoch."""
    cfg = config.load()
    assert (cfg.train.schedule, cfg.train.max_epochs, cfg.train.early_stop_acc) == ("cosine", 200, 0.999)
    vocab, data = 5, _split(8, 4, 5, seed=4)
    trainer = Trainer(TinyLM(vocab, d=8), data, data, vocab, cfg.train, tmp_path, torch.device("cpu"), {})
    lrs = []
    for _ in range(200):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    lr, low = cfg.train.lr, cfg.train.min_lr
    expected = [low + 0.5 * (lr - low) * (1 + math.cos(math.pi * e / 200)) for e in range(200)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert lrs[100] == pytest.approx((lr + low) / 2)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(low)


def test_checkpoint_from_another_run_is_refused(tmp_path):
    vocab, data = 5, _split(8, 4, 5, seed=8)
    _trainer(tmp_path, TinyLM(vocab, d=8), data, data, vocab, "train.max_epochs=1").fit()
    other = _trainer(tmp_path, TinyLM(vocab, d=8), data, data, vocab, "train.max_epochs=1")
    other.fingerprint = {"test": 2}
    with pytest.raises(ValueError, match="another run"):
        other.fit()


def test_drop_last_skips_the_partial_batch(tmp_path):
    vocab, data = 5, _split(20, 4, 5, seed=9)
    trainer = _trainer(tmp_path, TinyLM(vocab, d=8), data, data, vocab, "train.max_epochs=1",
                       "train.drop_last=true")
    run = trainer.train_epoch()
    assert run["steps"] == 2 and run["preds"].shape == (16, 4)
    assert int(run["count"]) == int((run["targets"] != -100).sum())
