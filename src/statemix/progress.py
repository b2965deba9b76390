"""Progress of a training: one flushed log line per epoch, a tqdm bar on a terminal, a summary line at the end.

Lines go to stdout with flush=True, so a Snakemake log (stdout redirected to a file) shows each epoch as it
ends; the bar goes to stderr, and only when stderr is a terminal. The ETA assumes every remaining epoch up to
max_epochs runs, so early stopping can only make it shorter.
"""
from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class EpochPrinter:
    """Trainer hook: `start(trainer)` once, `step()` per optimizer step, `epoch(row)` per epoch, `close()`."""

    def __init__(self, max_epochs: int, steps_per_epoch: int, out=None, bar: bool | None = None):
        self.max_epochs, self.steps_per_epoch = max_epochs, steps_per_epoch
        self.out = out or sys.stdout
        self.bar_wanted = sys.stderr.isatty() if bar is None else bar
        self.bar, self.seconds, self.epochs = None, 0.0, 0

    def start(self, trainer) -> None:
        epoch = trainer.epoch
        if self.bar_wanted:
            from tqdm import tqdm
            self.bar = tqdm(total=self.max_epochs * self.steps_per_epoch, initial=epoch * self.steps_per_epoch,
                            unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)
        self._t = time.perf_counter()

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def epoch(self, row: dict) -> None:
        now = time.perf_counter()
        self.seconds, self.epochs, self._t = self.seconds + now - self._t, self.epochs + 1, now
        left = (self.max_epochs - row["epoch"]) * self.seconds / self.epochs
        rate = row["steps"] / row["train_s"] if row["train_s"] > 0 else float("inf")
        line = (f"epoch {row['epoch']}/{self.max_epochs}  train loss {row['train_loss']:.4f} acc "
                f"{row['train_acc']:.4f}  test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}  "
                f"lr {row['lr']:.2e}  {rate:.1f} steps/s  ETA <={_duration(left)}")
        if self.bar is not None:
            self.bar.set_postfix_str(f"epoch {row['epoch']} test acc {row['test_acc']:.3f}", refresh=False)
            self.bar.write(line, file=self.out)
            self.out.flush()
        else:
            print(line, file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def summary(out, metrics: dict) -> str:
    """The one line a finished (or failed) training ends with."""
    if metrics["status"] != "ok":
        return (f"statemix.train: {out}: FAILED after {metrics.get('epochs', 0)} epoch(s): {metrics['error']}; "
                f"wall {metrics['wall_time_s']:.1f} s")
    rate = metrics.get("steps_per_s")
    return (f"statemix.train: {out}: done, {metrics['epochs']} epoch(s) (stopped: {metrics['stopped']}), selected "
            f"epoch {metrics['selected_epoch']}: test acc {metrics['test_acc']:.4f} loss {metrics['test_loss']:.4f}, "
            f"train acc {metrics['train_acc']:.4f}; {metrics['steps']} steps"
            + (f" at {rate:.1f} steps/s" if rate else "") + f"; wall {metrics['wall_time_s']:.1f} s")
