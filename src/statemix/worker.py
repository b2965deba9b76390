"""Many trainings in one process: `python -m statemix.worker --task T [--arch A] --data DIR --run [ARCH:]W,SEED,OUT
[--run [ARCH:]W,SEED,OUT ...] [--params FILE ...] [--set section.key=value ...]`.

Each run is what `python -m statemix.train --width W --seed SEED --out OUT` (same task, data, params) would do:
same init (seeded per run), same shuffles (seeded per run and epoch), its own folder, checkpoint every
epoch, resume, early stop and metrics.json. Runs that differ only in their seed are stacked into one
batched model (statemix.stack) and stepped together; the others (other widths, or architectures with
modules that have no stacked twin) step side by side, each group on its own CUDA stream. A run names its
architecture (`lru:8,0,OUT`) or takes `--arch`, so one worker can hold every architecture of a task: all
groups then share one CUDA context, where their streams overlap, instead of processes that the GPU
time-slices. Imports, data loading and graph capture are paid once per worker. A run that stops early is
final at once (metrics.json written); it keeps riding in its stack but is never reported again. Killing the
worker loses at most the current epoch of each run. Exit status: 0 all ok, 2 bad input, 3 some run diverged.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from contextlib import nullcontext

import torch

from statemix import config as config_mod
from statemix import graphs, stack, train
from statemix.trainer import Diverged


def parse_args(argv=None) -> tuple[argparse.Namespace, list[argparse.Namespace]]:
    p = argparse.ArgumentParser(prog="python -m statemix.worker", description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True)
    p.add_argument("--arch", default=None, help="architecture of every run that names none")
    p.add_argument("--data", default=None, help="dataset folder of every run that names none")
    p.add_argument("--run", action="append", required=True, metavar="[ARCH:]WIDTH,SEED,OUT[,DATA]", dest="runs",
                   help="one run; ARCH (default --arch) and DATA (default --data) where they differ per run")
    p.add_argument("--params", action="append", default=[])
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    args = p.parse_args(argv)
    runs = []
    for text in args.runs:
        parts = text.split(",")
        if len(parts) not in (3, 4) or not all(parts):
            raise ValueError(f"--run {text!r}: expected [ARCH:]WIDTH,SEED,OUT or [ARCH:]WIDTH,SEED,OUT,DATA")
        if len(parts) == 3 and args.data is None:
            raise ValueError(f"--run {text!r}: names no DATA and no --data was given")
        arch, _, width = parts[0].rpartition(":")
        if not (arch or args.arch):
            raise ValueError(f"--run {text!r}: names no ARCH (as ARCH:WIDTH,...) and no --arch was given")
        runs.append(argparse.Namespace(task=args.task, arch=arch or args.arch, width=width, seed=parts[1],
                                       data=parts[3] if len(parts) == 4 else args.data, out=parts[2],
                                       params=args.params,
                                       overrides=args.overrides))
    return args, runs


def stack_key(job: train.Job) -> tuple:
    """Runs with equal keys can share one stacked model: everything but the seed and the folder agrees."""
    skip = ("train.seed", "track.experiment", "data.dir")
    flat = {k: v for k, v in config_mod.flatten(job.cfg).items() if k not in skip}
    shape = tuple(job.trainer.train.inputs.shape), tuple(job.trainer.test.inputs.shape)
    return tuple(sorted(flat.items())), shape, job.trainer.epoch


class Group:
    """Runs advanced by one `graphs.Steps`: a stack of K runs, or a single run (K = 1)."""

    def __init__(self, jobs: list[train.Job], device: torch.device):
        self.jobs, self.K, self.device = jobs, len(jobs), device
        self.trainers = [job.trainer for job in jobs]
        first = self.trainers[0]
        cfg = first.cfg
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream(device))
        with self._on_stream():
            self.model = stack.stack_models([j.model for j in jobs]) if self.K > 1 else jobs[0].model
            self.params = list(self.model.parameters())
            graphed = graphs.use_graphs(jobs[0].cfg.train.cuda_graphs, device)
            self.optimizer = graphs.make_optimizer(self.params, cfg, device, graphed)
            self._load_optimizer()
            graphs.set_lr(self.optimizer, float(graphs.current_lr(first.optimizer)))
            forward = graphs.compiled(self.model) if cfg.compile else self.model
            self.steps = graphs.Steps(forward, self.params, self.optimizer, self.K,
                                      [t.train for t in self.trainers], cfg, device,
                                      first.precision, graphed)
        self.active = [t.stopped is None for t in self.trainers]
        self.codes = {}

    def _on_stream(self):
        return torch.cuda.stream(self.stream) if self.stream is not None else nullcontext()

    def _per_run(self, i: int) -> list[torch.Tensor]:
        return [list(t.model.parameters())[i] for t in self.trainers]

    def _load_optimizer(self) -> None:
        """Stacked AdamW state from the runs' own optimizers (filled by resume), or fresh."""
        state = {}
        for i in range(len(self.params)):
            states = [t.optimizer.state.get(p) for t, p in zip(self.trainers, self._per_run(i))]
            if any(not s for s in states):
                continue
            state[i] = {k: (torch.stack([s[k] for s in states]) if self.K > 1 and k != "step" else states[0][k])
                        for k in states[0]}
        if state:
            groups = self.optimizer.state_dict()["param_groups"]
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})

    @torch.no_grad()
    def _store(self) -> None:
        """Copy each run's weights and AdamW state back into its own model and optimizer (for its checkpoint)."""
        for i, p in enumerate(self.params):
            mine = self.optimizer.state.get(p, {})
            for k, (t, q) in enumerate(zip(self.trainers, self._per_run(i))):
                if self.K > 1:
                    q.copy_(p[k])
                if mine:
                    t.optimizer.state[q] = {name: (v.detach().clone() if name == "step" or self.K == 1
                                                   else v[k].detach().clone()) for name, v in mine.items()}

    def begin(self) -> int:
        self.lr = graphs.current_lr(self.trainers[0].optimizer)
        with self._on_stream():
            orders = torch.stack([t.shuffle_order() for t in self.trainers])
            self.n_steps = self.steps.begin_epoch(orders)
        return self.n_steps

    def step(self, i: int) -> None:
        if i < self.n_steps:
            with self._on_stream():
                self.steps.step(i)

    def evaluate(self) -> None:
        """Queue the epoch's accumulators, the test evaluation and the copy-back on this group's stream, without
        waiting: every group's evaluation is in flight before the first group's books are kept on the host."""
        self.eval_t0 = time.perf_counter()
        with self._on_stream():
            self.epoch_runs = self.steps.end_epoch(self.lr)
            self.tests = self.steps.evaluate([t.test for t in self.trainers])
            self._store()

    def end(self, train_s: float) -> None:
        """Book the epoch for every active run once its evaluation is done; a run that stops or diverges is
        finished."""
        t0, runs, tests = self.eval_t0, self.epoch_runs, self.tests
        if self.stream is not None:
            self.stream.synchronize()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            for t in self.trainers:
                t.scheduler.step()
        graphs.set_lr(self.optimizer, float(graphs.current_lr(self.trainers[0].optimizer)))
        for k, (job, trainer) in enumerate(zip(self.jobs, self.trainers)):
            if not self.active[k]:
                continue
            try:
                trainer.end_epoch(runs[k], trainer._summarise(tests[k]), train_s, time.perf_counter() - t0)
            except Diverged as err:
                self.active[k] = False
                trainer._call("close")
                self.codes[job.out] = train.finish(job, None, err)
                continue
            row = trainer.history[-1]
            print(f"{job.out}: epoch {trainer.epoch} train_loss {row['train_loss']:.4f} test_acc "
                  f"{row['test_acc']:.4f} ({self.steps.path}, stack of {self.K})", flush=True)
            if trainer.stopped is not None:
                self.finalise(k)

    def finalise(self, k: int) -> None:
        self.active[k] = False
        self.trainers[k]._call("close")
        result = self.trainers[k]._final()
        result["step_path"] = self.steps.path
        result["stacked_runs"] = self.K
        self.codes[self.jobs[k].out] = train.finish(self.jobs[k], result)


def build_groups(jobs: list[train.Job], device: torch.device, errors: list) -> list[Group]:
    """Stack runs whose stack_key agrees and whose models have stacked twins; the rest run one per group. A
    group that cannot be built is dropped as `each` drops one."""
    buckets: dict = {}
    for job in jobs:
        job.trainer._resume()
        job.trainer._call("start", job.trainer)
        stackable = stack.unstackable(job.model) is None
        key = stack_key(job) if stackable else ("alone", str(job.out))
        buckets.setdefault(key, []).append(job)
    groups = []
    for members in buckets.values():
        try:
            groups.append(Group(members, device))
        except Exception as err:  # noqa: BLE001 -- one architecture's bug must not end the other runs
            _drop(members, [True] * len(members), err, errors)
    return groups


def _drop(jobs: list[train.Job], active: list[bool], err: Exception, errors: list) -> None:
    """Leave a broken group's runs unfinished: tracked FAILED, no metrics.json, their last checkpoint kept, so
    a later call resumes them."""
    print(f"statemix.worker: error: {type(err).__name__}: {err}; left unfinished (resumable): "
          f"{', '.join(str(j.out) for j, a in zip(jobs, active) if a)}", file=sys.stderr, flush=True)
    for job, alive in zip(jobs, active):
        if alive:
            job.abort(err)
    errors.append(err)


def each(groups: list[Group], call, errors: list) -> list[Group]:
    """`call(group)` for each group; the groups that raised are dropped (`_drop`) and the rest carry on."""
    kept = []
    for g in groups:
        try:
            call(g)
            kept.append(g)
        except Exception as err:  # noqa: BLE001 -- one architecture's bug must not end the other runs
            _drop(g.jobs, g.active, err, errors)
            g.active = [False] * g.K
    return kept


def _save_seconds(groups: list[Group]) -> float:
    return sum(t.save_s for g in groups for t in g.trainers)


def run(runs: list[argparse.Namespace]) -> int:
    cache, jobs, codes = {}, [], []
    for args in runs:
        job = train.prepare(args, cache, graphed=False)
        if isinstance(job, int):
            codes.append(job)
        else:
            jobs.append(job)
    if not jobs:
        return max(codes, default=0)
    device, errors = jobs[0].device, []
    groups = build_groups(jobs, device, errors)
    for g in groups:
        for k, t in enumerate(g.trainers):
            if t.stopped is not None:
                g.finalise(k)
    print(f"statemix.worker: {len(jobs)} runs in {len(groups)} groups "
          f"(stacks of {[g.K for g in groups]}) on {device}", flush=True)
    try:
        live, rounds = [g for g in groups if any(g.active)], 0
        while live:
            t0, saved = time.perf_counter(), _save_seconds(groups)
            live = each(live, Group.begin, errors)
            group_steps = sum(g.n_steps for g in live)
            for i in range(max((g.n_steps for g in live), default=0)):
                live = each(live, lambda g: g.step(i), errors)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t1, ran = time.perf_counter(), list(live)
            train_s = t1 - t0
            live = each(live, Group.evaluate, errors)
            live = [g for g in each(live, lambda g: g.end(train_s), errors) if any(g.active)]
            rounds += 1
            print(f"statemix.worker: round {rounds}: {len(ran)} groups, {group_steps} group-steps in {train_s:.2f} s "
                  f"({1e3 * train_s / max(group_steps, 1):.2f} ms each), evaluation and bookkeeping "
                  f"{time.perf_counter() - t1:.3f} s (checkpoints {_save_seconds(groups) - saved:.3f} s)", flush=True)
    except BaseException as err:
        for g in groups:
            for k, job in enumerate(g.jobs):
                if g.active[k]:
                    job.abort(err)
        raise
    codes += [c for g in groups for c in g.codes.values()]
    if errors:
        print(f"statemix.worker: {len(errors)} group(s) failed (above); the other runs finished", file=sys.stderr)
        return 1
    return max(codes, default=0)


def main(argv=None) -> int:
    return train.run_cli("statemix.worker", lambda: run(parse_args(argv)[1]))


if __name__ == "__main__":
    sys.exit(main())
