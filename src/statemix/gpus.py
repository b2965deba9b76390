"""GPU slots: which GPUs a host has, and which GPU each GPU job of the workflow uses.

Snakemake 9 schedules resources as plain counters and hands out no device ids. So on one host every GPU
gets its own counter, `gpu<i>_mem_mb`, sized by the profile's per-GPU pool `gpu_mem_mb`, and every GPU job
is placed on one GPU when the Snakefile is parsed: it draws its memory from that GPU's counter only and runs
with CUDA_VISIBLE_DEVICES set to that GPU. Snakemake's own scheduler then keeps each GPU's pool; no job
waits for memory while holding a slot, a killed job leaves no lock file behind, and `snakemake -n -p`
prints the plan. The price is a static placement, so jobs are spread longest-first by their optimizer-step
budget, which keeps the GPUs' loads within one job of each other.

Under a cluster executor (Slurm) the scheduler hands out the GPUs: no counters, no CUDA_VISIBLE_DEVICES
from us, and each GPU job asks for one GPU (`gpu=1`), its CPUs, memory and time limit.
"""

from __future__ import annotations

import functools
import heapq
import math
import os
import shutil
import subprocess
from dataclasses import dataclass

POOL_KEY = "gpu_mem_mb"
DEFAULT_RUNTIME_MIN = 60
DEFAULT_MEM_MB = 4000


def detect(env=os.environ) -> list:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L` (no CUDA initialised)."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def devices(requested, use_gpu: bool, detected: list) -> list:
    """The GPU ids to spread jobs over: `requested` (--config gpus=N) of the detected ones, all by default.

    With no GPU detected (a CPU machine with STATEMIX_GPU=1), N fake ids 0..N-1 are used, so that a dry run
    shows the plan of an N-GPU host.
    """
    if requested in (None, ""):
        n = len(detected) or 1
    else:
        try:
            n = int(requested)
        except (TypeError, ValueError):
            raise ValueError(f"--config gpus={requested!r}: expected a whole number of GPUs >= 1") from None
        if n < 1:
            raise ValueError(f"--config gpus={requested!r}: expected a whole number of GPUs >= 1 "
                             "(STATEMIX_GPU=0 runs without a GPU)")
    if not use_gpu:
        return []
    if not detected:
        return [str(i) for i in range(n)]
    if n > len(detected):
        raise ValueError(f"--config gpus={n}: only {len(detected)} GPU(s) visible ({','.join(detected)})")
    return detected[:n]


def assign(costs: dict, gpus: list) -> dict:
    """{job key: GPU id}: longest-processing-time first, each job onto the least loaded GPU (ties: lowest)."""
    if not gpus:
        return {}
    loads = [(0.0, i) for i in range(len(gpus))]
    placed = {}
    for key in sorted(costs, key=lambda k: (-costs[k], k)):
        load, i = heapq.heappop(loads)
        placed[key] = gpus[i]
        heapq.heappush(loads, (load + costs[key], i))
    return placed


def shortest_first(costs: dict) -> dict:
    """{job key: Snakemake priority}: the cheapest job the highest (ties: by key), so a time-limited call on one
    GPU (the paper chunks) lands the most finished runs before its limit; the GPU's aggregate rate hardly
    depends on the order, as its processes time-slice it."""
    order = sorted(costs, key=lambda k: (costs[k], k))
    return {key: len(order) - rank for rank, key in enumerate(order)}


@functools.lru_cache(maxsize=None)
def _epochs_and_batch(overrides: tuple) -> tuple:
    from statemix import config

    cfg = config.load(overrides=overrides)
    return cfg.train.max_epochs, cfg.train.batch_size


def run_steps(grid, run) -> int:
    """A run's optimizer-step budget (max_epochs x batches per epoch): its cost for placing it on a GPU."""
    epochs, batch = _epochs_and_batch(tuple(run.overrides))
    ds = grid.datasets[run.dataset_path(grid.name)]
    return epochs * math.ceil(int(ds.split_params["train"].get("num_examples", 1)) / batch)


@dataclass(frozen=True)
class Plan:
    """How GPU jobs get their GPU: per-GPU pools on this host, or the cluster scheduler's GPUs."""

    gpus: tuple
    pool_mb: int
    cluster: bool
    use_gpu: bool

    def pools(self) -> dict:
        """The global resources to declare: one memory counter per GPU of this host."""
        return {} if self.cluster else {f"gpu{i}_mem_mb": self.pool_mb for i in range(len(self.gpus))}

    def resources(self, placement: dict, key_of, mem_mb: int, spec: dict) -> dict:
        """A rule's `resources:` for a GPU job; `key_of(wildcards)` names the job in `placement`.

        On this host: the job's memory drawn from its GPU's counter, and `gpu_env`, the shell prefix that
        shows it only that GPU. On a cluster: Slurm's `gpu`, `mem_mb` and `runtime` from the grid.
        """
        if self.cluster:
            res = {"gpu_env": "", "mem_mb": int(spec.get("mem_mb", DEFAULT_MEM_MB)),
                   "runtime": int(spec.get("runtime_min", DEFAULT_RUNTIME_MIN))}
            return {**res, "gpu": 1} if self.use_gpu else res
        if not self.gpus:
            return {"gpu_env": ""}
        index = {g: i for i, g in enumerate(self.gpus)}

        def draw(i):
            return lambda wc: mem_mb if index[placement.get(key_of(wc), self.gpus[0])] == i else 0

        res = {f"gpu{i}_mem_mb": draw(i) for i in range(len(self.gpus))}
        res["gpu_env"] = lambda wc: f"CUDA_VISIBLE_DEVICES={placement.get(key_of(wc), self.gpus[0])}"
        return res


def plan(config: dict, use_gpu: bool, pool_mb, cluster: bool, env=os.environ) -> Plan:
    """The plan for this Snakemake process: `--config gpus=N`, the detected GPUs and the per-GPU pool."""
    gpus = () if cluster else tuple(devices(config.get("gpus"), use_gpu, detect(env) if use_gpu else []))
    return Plan(gpus, int(pool_mb or 0), cluster, use_gpu)
