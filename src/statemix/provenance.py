"""Where and with what a run was made: hardware, software versions, git state, code id, dataset hashes, peak
memory.

Recorded in metrics.json and turned into MLflow tags; kept apart from the training loop so that every entry
point (the CLI, benchmarks, a multi-run worker) describes its runs the same way.

The code id names the code itself (src/statemix's .py files), so a run made from a copied working tree whose
git metadata is stale or missing (a GPU machine's copy) still traces back to a commit:

    python -m statemix.provenance commits CODE_ID     # the commits whose src/statemix has that code
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch

from statemix.paths import ROOT

CODE = "src/statemix"
"""The code a result depends on, relative to the project root (its .py files)."""


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


def _git(*cmd, root: Path = ROOT) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), *cmd], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _code_id(entries) -> str:
    """sha256 over sorted `path blob-id` lines: equal for a working tree and a commit with the same files."""
    return hashlib.sha256("".join(f"{path} {blob}\n" for path, blob in sorted(entries)).encode()).hexdigest()


def code_id(root: Path = ROOT) -> str:
    """The id of the working tree's src/statemix .py files (git's blob ids, so no git metadata is needed)."""
    base = root / CODE
    entries = []
    for f in base.rglob("*.py"):
        data = f.read_bytes()
        entries.append((f.relative_to(base).as_posix(), hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()))
    return _code_id(entries)


def commits_with_code(code: str, rev: str = "HEAD", root: Path = ROOT) -> list[str]:
    """The commits reachable from `rev` (newest first) whose src/statemix .py files have code id `code`."""
    found = []
    for commit in _git("rev-list", rev, root=root).split():
        entries = []
        for line in _git("ls-tree", "-r", commit, "--", CODE, root=root).splitlines():
            meta, _, path = line.partition("\t")
            if path.endswith(".py"):
                entries.append((path[len(CODE) + 1:], meta.split()[2]))
        if _code_id(entries) == code:
            found.append(commit)
    return found


def provenance(device: torch.device, manifests: dict, out: Path) -> dict:
    """Who/what/where of a run: recorded in metrics.json and turned into MLflow tags."""
    try:
        from importlib.metadata import version
        triton = version("triton")
    except Exception:
        triton = None
    hashes = {f"{split}.{name}": m["sha256"][name] for split, m in manifests.items() for name in ("inputs", "targets")}
    return {"git_commit": _git("rev-parse", "HEAD") or None,
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")), "code_id": code_id(),
            "dataset_sha256": hashlib.sha256("".join(hashes[k] for k in sorted(hashes)).encode()).hexdigest(),
            "dataset": hashes, "hardware": describe_hardware(device), "cpu_model": cpu_model(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "gpu_driver": gpu_driver() if device.type == "cuda" else None, "host": platform.node(),
            "torch": torch.__version__,
            "triton": triton, "python": platform.python_version(), "out_dir": str(out.resolve())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="The commits whose src/statemix has a run's code id "
                                            "(metrics.json provenance.code_id, column code_id of runs.csv).")
    p.add_argument("command", choices=["commits", "id"], help="commits CODE_ID, or id: the working tree's")
    p.add_argument("code", nargs="?", help="a code id (64 hex digits)")
    p.add_argument("--rev", default="HEAD", help="search the commits reachable from this revision")
    args = p.parse_args(argv)
    if args.command == "id":
        print(code_id())
        return 0
    if not args.code or len(args.code) != 64 or any(c not in "0123456789abcdef" for c in args.code):
        print(f"statemix.provenance: error: CODE_ID {args.code!r} is not 64 lowercase hex digits", file=sys.stderr)
        return 2
    commits = commits_with_code(args.code, args.rev)
    print("\n".join(commits) if commits else f"no commit reachable from {args.rev} has code id {args.code}")
    return 0 if commits else 1


if __name__ == "__main__":
    sys.exit(main())
