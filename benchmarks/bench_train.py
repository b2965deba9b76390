"""Training throughput: steps/s of the real training step (statemix.trainer) on in-context recall.

Each architecture is timed through `Trainer.train_epoch`, the same code a training runs: forward, loss,
backward and AdamW on device-resident batches of MAD's ICR (B=128, T=127, d=128, 2 blocks), with bf16
autocast on CUDA. Two baselines are timed in the same run: the loop floor (the same step for an
embedding + unembedding model with no mixer: what launch and optimizer overhead alone allow) and a device
copy, whose bandwidth states what the memory system gives (these models are launch-bound, far from it).
Writes <out>.csv and <out>.md (atomically).

    python benchmarks/bench_train.py --out reports/benchmarks/bench_train [--archs ...] [--compile both]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd
import torch

from statemix import config
from statemix.io import atomic_write_text
from statemix.models import build_model
from statemix.tasks import TASKS, make_dataset, resolve_params
from statemix.provenance import describe_hardware, peak_memory
from statemix.trainer import Split, Trainer, resolve_device

ARCHS = ("bdlru-m4", "hlru-m2", "mamba2", "gdn", "lstm")


class Floor(torch.nn.Module):
    """Tokens -> embedding -> unembedding: the cheapest model the training step can run."""

    def __init__(self, vocab: int, d_model: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d_model)
        self.head = torch.nn.Linear(d_model, vocab)

    def forward(self, x):
        return self.head(self.embed(x))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_gbps(device, nbytes=1 << 30, repeat=10) -> float:
    src = torch.empty(nbytes // 4, device=device).normal_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        dst.copy_(src)
    _sync(device)
    return 2 * nbytes * repeat / (time.perf_counter() - t0) / 1e9


def time_steps(model, split, test, vocab, train_cfg, device, epochs) -> tuple[float, float]:
    """(steps/s over `epochs` timed epochs after one warm-up epoch, first-epoch seconds incl. compile)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, split, test, vocab, train_cfg, tmp, device, {})
        t0 = time.perf_counter()
        trainer.train_epoch()
        _sync(device)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        steps = sum(trainer.train_epoch()["steps"] for _ in range(epochs))
        _sync(device)
        return steps / (time.perf_counter() - t0), warm


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=list(ARCHS))
    p.add_argument("--width", type=int, default=128, help="state per layer (registry width), iso-state")
    p.add_argument("--steps", type=int, default=40, help="batches per timed epoch")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    p.add_argument("--compile", choices=("off", "on", "both"), default="off")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="reports/benchmarks/bench_train")
    args = p.parse_args(argv)

    cfg = config.load(overrides=[f"train.device={args.device}", "train.early_stop_acc=0"])
    device = resolve_device(args.device)
    batch = cfg.train.batch_size
    x, y = make_dataset("in-context-recall", batch * args.steps, 0, "train")
    xt, yt = make_dataset("in-context-recall", batch, 1, "test")
    split = Split(torch.as_tensor(x, device=device), torch.as_tensor(y, device=device))
    test = Split(torch.as_tensor(xt, device=device), torch.as_tensor(yt, device=device))
    vocab = TASKS["in-context-recall"].vocab_size(resolve_params("in-context-recall"))
    modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.compile]
    gbps = copy_gbps(device) if device.type == "cuda" else copy_gbps(device, 1 << 26)
    rows = []
    for name in ["floor", *args.archs]:
        for compiled in modes:
            train_cfg = config.load(overrides=[f"train.device={device.type}", f"train.compile={compiled}"]).train
            torch.manual_seed(0)
            if name == "floor":
                model = Floor(vocab, cfg.model.d_model).to(device)
            else:
                model = build_model(name, args.width, vocab, x.shape[1], d_model=cfg.model.d_model,
                                    n_layers=cfg.model.n_layers).to(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                rate, warm = time_steps(model, split, test, vocab, train_cfg, device, args.epochs)
                error = ""
            except Exception as err:  # a backend that fails to compile is reported, not fatal
                rate, warm, error = float("nan"), float("nan"), f"{type(err).__name__}: {err}"[:200]
            rows.append({"arch": name, "width": 0 if name == "floor" else args.width, "compile": compiled,
                         "params": sum(q.numel() for q in model.parameters()), "steps_per_s": rate,
                         "ms_per_step": 1e3 / rate if rate == rate else float("nan"),
                         "first_epoch_s": warm, "peak_mem_mb": peak_memory(device)[0] / 2**20,
                         "error": error})
            print(rows[-1], flush=True)
            del model
            markdown = write(rows, device, args, x.shape[1], cfg, gbps)
    print(markdown)


def write(rows, device, args, seq_len, cfg, gbps):
    """Write the table so far (each row lands as soon as it is measured, so a timeout keeps what was done)."""
    table = pd.DataFrame(rows)
    floor = table[table.arch == "floor"].set_index("compile")["steps_per_s"]
    table["share_of_floor"] = [r.steps_per_s / floor.get(r.compile, float("nan")) for r in table.itertuples()]
    header = (f"# Training steps/s on in-context recall (B={cfg.train.batch_size}, T={seq_len}, "
              f"d={cfg.model.d_model}, {cfg.model.n_layers} blocks, width {args.width})\n\n"
              f"Hardware: {describe_hardware(device)}; torch {torch.__version__}; "
              f"precision {'bf16 autocast' if device.type == 'cuda' else 'fp32'}; device copy {gbps:.0f} GB/s "
              f"(read+write) measured in this run. `share_of_floor` = steps/s over the loop floor (embedding + "
              f"unembedding only, same step, same run): the launch/optimizer overhead bound.\n\n")
    markdown = header + table.to_markdown(index=False, floatfmt=".3g") + "\n"
    atomic_write_text(f"{args.out}.csv", table.to_csv(index=False))
    atomic_write_text(f"{args.out}.md", markdown)
    return markdown


if __name__ == "__main__":
    main()
