"""The training loop behind `statemix.train`: MAD's protocol, fast on a GPU, resumable after SIGKILL.

The whole dataset sits on the device and per-step metrics accumulate there, so the host synchronises once per
epoch. Every epoch ends with an atomic checkpoint (model, optimizer, scheduler, best-epoch weights, history,
RNG states, all weights_only-loadable: statemix.runs); shuffling is drawn from a generator seeded by (seed, epoch), so a resumed run replays the same
batches and ends bitwise equal on the CPU.
"""
from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from statemix import graphs, runs
from statemix.config import TrainConfig
from statemix.io import atomic_write_text
from statemix.metrics import accuracies, check_ids
from statemix.runs import CHECKPOINT

IGNORE = -100
HISTORY = "history.csv"


class Diverged(RuntimeError):
    """The loss became NaN or infinite before any epoch completed: there is no epoch to report, the run fails.

    A run that diverges later stops with `stopped == "diverged"` and reports its best epoch before the NaN, as
    MAD's checkpointing does."""


@dataclass
class Split:
    """One split on the device: inputs and targets, int64 [N, T], targets IGNORE where unscored."""
    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device: got 'cuda' but CUDA is not available; allowed here: 'auto', 'cpu'")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Trains `model` (int64 tokens [B, T] -> logits [B, T, V]) on `train`, evaluating on `test` every epoch.

    `hooks` see the run as it goes: each may define `start(trainer)`, `step()` (per optimizer step, no host
    sync), `epoch(row)` (the history row just appended) and `close()` (statemix.progress, statemix.track).
    """

    def __init__(self, model: torch.nn.Module, train: Split, test: Split, num_classes: int,
                 cfg: TrainConfig, out_dir: str | Path, device: torch.device, fingerprint: dict, hooks=()):
        self.model, self.train, self.test, self.cfg = model, train, test, cfg
        self.num_classes, self.device, self.fingerprint = num_classes, device, fingerprint
        self.hooks = list(hooks)
        self.out = Path(out_dir)
        self.precision = resolve_precision(cfg.precision, device)
        self.forward = graphs.compiled(model) if cfg.compile else model
        graphed = graphs.use_graphs(cfg.cuda_graphs, device)
        self.optimizer = graphs.make_optimizer(model.parameters(), cfg, device, graphed)
        if cfg.schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=cfg.max_epochs, eta_min=cfg.min_lr)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)
        self.epoch, self.history, self.stopped, self.divergence = 0, [], None, None
        self.best = {"epoch": 0, "test_loss": math.inf, "state": None}
        self.save_s = 0.0
        """Seconds spent writing checkpoints (a batch worker reports them per round)."""
        self.train_preds = torch.empty_like(train.targets)
        self.steps = graphs.Steps(self.forward, model.parameters(), self.optimizer, 1, [train], cfg, device,
                                  self.precision, True) if graphed else None

    def shuffle_order(self) -> torch.Tensor:
        """This epoch's permutation of the train rows, drawn from a generator seeded by (seed, epoch)."""
        gen = torch.Generator(self.device).manual_seed(self.cfg.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.train), generator=gen, device=self.device)

    def _batches(self, size: int, order: torch.Tensor, drop_last: bool) -> list:
        n = len(order)
        stop = n - n % size if drop_last and n >= size else n
        return [order[start:start + size] for start in range(0, stop, size)]

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                               reduction=reduction)

    def train_epoch(self) -> dict:
        """One pass over shuffled train batches; returns device tensors (no host sync)."""
        cfg, data = self.cfg, self.train
        order = self.shuffle_order()
        lr = graphs.current_lr(self.optimizer)
        if self.steps is not None:
            run = self.steps.train_epoch(order[None], lr)[0]
            self.scheduler.step()
            return run
        self.model.train()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device, dtype=torch.int64)
        finite = torch.ones((), device=self.device, dtype=torch.bool)
        batches = self._batches(cfg.batch_size, order, cfg.drop_last)
        steps = [h.step for h in self.hooks if hasattr(h, "step")]
        for idx in batches:
            x, y = data.inputs[idx], data.targets[idx]
            with _autocast(self.precision, self.device):
                logits = self.forward(x)
            scored = (y != IGNORE).sum()
            loss = self._loss(logits, y, "sum") / scored.clamp(min=1)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            loss_sum += loss.detach().double() * scored
            count += scored
            finite &= torch.isfinite(loss.detach())
            self.train_preds[idx] = logits.detach().argmax(-1)
            for step in steps:
                step()
        self.scheduler.step()
        seen = order[:len(batches) * cfg.batch_size]
        return {"loss_sum": loss_sum, "count": count, "finite": finite, "steps": len(batches), "lr": lr,
                "preds": self.train_preds[seen], "targets": data.targets[seen]}

    @torch.no_grad()
    def evaluate(self, data: Split) -> dict:
        """Loss, perplexity and macro/micro accuracy over the scored positions of `data` (one host sync)."""
        if self.steps is not None:
            return self._summarise(self.steps.evaluate([data])[0])
        self.model.eval()
        preds = torch.empty_like(data.targets)
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        order = torch.arange(len(data), device=self.device)
        for idx in self._batches(self.cfg.eval_batch_size, order, False):
            with _autocast(self.precision, self.device):
                logits = self.forward(data.inputs[idx])
            loss_sum += self._loss(logits, data.targets[idx], "sum").double()
            preds[idx] = logits.argmax(-1)
        count = (data.targets != IGNORE).sum()
        return self._summarise({"loss_sum": loss_sum, "count": count, "preds": preds, "targets": data.targets})

    def _summarise(self, acc: dict) -> dict:
        """Loss, perplexity and accuracies of one split's accumulators: counted on their device, one host sync."""
        macro, micro, bad = accuracies(acc["preds"], acc["targets"], self.num_classes, ignore_index=IGNORE)
        loss = acc["loss_sum"] / acc["count"].clamp(min=1)
        loss, macro, micro, bad = torch.stack([torch.as_tensor(v, device=macro.device, dtype=torch.float64)
                                               for v in (loss, macro, micro, bad)]).tolist()
        if bad:
            check_ids(acc["preds"], acc["targets"], self.num_classes, ignore_index=IGNORE)
        ppl = math.exp(loss) if loss < 700 else math.inf
        return {"loss": loss, "ppl": ppl, "acc": macro, "acc_micro": micro}

    def fit(self) -> dict:
        """Train to completion (or resume it), then evaluate the last and the selected epoch on both splits."""
        self._resume()
        self._call("start", self)
        try:
            self._loop()
        finally:
            self._call("close")
        return self._final()

    def steps_per_epoch(self) -> int:
        return len(self._batches(self.cfg.batch_size, torch.arange(len(self.train)), self.cfg.drop_last))

    def _call(self, name: str, *args) -> None:
        for hook in self.hooks:
            if hasattr(hook, name):
                getattr(hook, name)(*args)

    def _loop(self) -> None:
        cfg = self.cfg
        while self.stopped is None:
            t0 = time.perf_counter()
            run = self.train_epoch()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t1 = time.perf_counter()
            self.end_epoch(run, self.evaluate(self.test), t1 - t0, time.perf_counter() - t1)

    def end_epoch(self, run: dict, test: dict, train_s: float, eval_s: float) -> None:
        """Book one finished epoch: divergence check, history row, best weights, stop rule, checkpoint."""
        cfg = self.cfg
        if not bool(run["finite"]):
            return self._diverged(f"train loss became NaN/inf in epoch {self.epoch + 1}")
        train = self._summarise(run)
        if not math.isfinite(test["loss"]):
            return self._diverged(f"test loss became NaN/inf in epoch {self.epoch + 1}")
        self.epoch += 1
        row = {"epoch": self.epoch, "lr": float(run["lr"]),
               **{f"train_{k}": v for k, v in train.items()}, **{f"test_{k}": v for k, v in test.items()},
               "steps": run["steps"], "train_s": train_s, "eval_s": eval_s}
        self.history.append(row)
        if test["loss"] < self.best["test_loss"]:
            self.best = {"epoch": self.epoch, "test_loss": test["loss"],
                         "state": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}
        self.stopped = self._stop_reason()
        if self.stopped or self.epoch % cfg.checkpoint_every == 0:
            self._save()
        self._call("epoch", row)

    def _diverged(self, message: str) -> None:
        """Stop at a NaN: with an earlier finite epoch, mark the run diverged and save; else raise Diverged."""
        if self.best["state"] is None:
            raise Diverged(message)
        self.stopped, self.divergence = "diverged", message
        self._save()

    def _stop_reason(self) -> str | None:
        cfg = self.cfg
        key = "test_acc" if cfg.accuracy == "macro" else "test_acc_micro"
        accs = [row[key] for row in self.history]
        if cfg.early_stop_acc > 0 and accs[-1] >= cfg.early_stop_acc:
            return "early_stop_acc"
        if cfg.patience > 0 and len(accs) > cfg.patience and max(accs[-cfg.patience:]) <= max(accs[:-cfg.patience]):
            return "patience"
        if self.epoch >= cfg.max_epochs:
            return "max_epochs"
        return None

    def _final(self) -> dict:
        if self.stopped == "diverged":
            last = {"epoch": self.epoch, **{k: v for k, v in self.history[-1].items() if k.startswith("test_")}}
        else:
            last = {"epoch": self.epoch, **self._both_splits()}
        if self.cfg.select == "best_test_ppl" and self.best["state"] is not None:
            current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.best["state"])
            selected = {"epoch": self.best["epoch"], **self._both_splits()}
            self.model.load_state_dict(current)
        else:
            selected = last
        steps = sum(row["steps"] for row in self.history)
        train_s = sum(row["train_s"] for row in self.history)
        return {"last": last, "selected": selected, "epochs": self.epoch, "stopped": self.stopped,
                "diverged": self.divergence,
                "steps": steps, "train_s": train_s, "eval_s": sum(row["eval_s"] for row in self.history),
                "steps_per_s": steps / train_s if train_s > 0 else None,
                "step_path": self.steps.path if self.steps is not None else graphs.PATH_EAGER}

    def _both_splits(self) -> dict:
        out = {}
        for name, split in (("train", self.train), ("test", self.test)):
            out.update({f"{name}_{k}": v for k, v in self.evaluate(split).items()})
        return out

    def _save(self) -> None:
        t0 = time.perf_counter()
        state = {"fingerprint": self.fingerprint, "epoch": self.epoch, "stopped": self.stopped,
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "best": self.best, "history": self.history,
                 "divergence": self.divergence,
                 "rng": runs.rng_state()}
        atomic_write_text(self.out / HISTORY, pd.DataFrame(self.history).to_csv(index=False))
        runs.save_checkpoint(self.out / CHECKPOINT, state)
        self.save_s += time.perf_counter() - t0

    def _resume(self) -> None:
        path = self.out / CHECKPOINT
        if not path.exists():
            return
        state = runs.load_checkpoint(path)
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(f"{path}: checkpoint belongs to another run (its fingerprint differs: "
                             f"{runs.differences(state['fingerprint'], self.fingerprint)}); "
                             f"statemix.runs.prepare_out moves such folders aside")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.stopped, self.best, self.history = (state["epoch"], state["stopped"], state["best"],
                                                             state["history"])
        self.divergence = state.get("divergence")
        runs.set_rng_state(state["rng"])
