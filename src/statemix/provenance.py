"""Where and with what a run was made: hardware, software versions, git state, dataset hashes, peak memory.

Recorded in metrics.json and turned into MLflow tags; kept apart from the training loop so that every entry
point (the CLI, benchmarks, a multi-run worker) describes its runs the same way.
"""
from __future__ import annotations

import hashlib
import os
import platform
import resource
import subprocess
from pathlib import Path

import torch

from statemix.paths import ROOT


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_driver() -> str | None:
    """The NVIDIA driver version (nvidia-smi), None where there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def describe_hardware(device: torch.device) -> str:
    """One string to compare runs by: the GPU and its driver on CUDA, else the CPU model and core count."""
    if device.type == "cuda":
        return (f"{torch.cuda.get_device_name(device)} x{torch.cuda.device_count()} (driver {gpu_driver() or '?'}, "
                f"CUDA {torch.version.cuda}; host cpu {cpu_model()})")
    return f"{cpu_model()} x{os.cpu_count()} ({platform.machine()})"


def peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak bytes: CUDA allocator peak on a GPU, else the process's max resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu_max_rss"


def _git(*cmd) -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(device: torch.device, manifests: dict, out: Path) -> dict:
    """Who/what/where of a run: recorded in metrics.json and turned into MLflow tags."""
    try:
        from importlib.metadata import version
        triton = version("triton")
    except Exception:
        triton = None
    hashes = {f"{split}.{name}": m["sha256"][name] for split, m in manifests.items() for name in ("inputs", "targets")}
    return {"git_commit": _git("rev-parse", "HEAD") or None,
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "dataset_sha256": hashlib.sha256("".join(hashes[k] for k in sorted(hashes)).encode()).hexdigest(),
            "dataset": hashes, "hardware": describe_hardware(device), "cpu_model": cpu_model(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "gpu_driver": gpu_driver() if device.type == "cuda" else None, "host": platform.node(),
            "torch": torch.__version__,
            "triton": triton, "python": platform.python_version(), "out_dir": str(out.resolve())}
