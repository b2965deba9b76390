"""GPU slots (statemix.gpus): detection, placement, per-GPU pools, and the plan a multi-GPU dry run shows."""

import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from statemix import gpus, grids

pytestmark = pytest.mark.slow  # toy Snakemake workflows and dry runs: `make test-all` runs it, `make test` skips it

ROOT = grids.ROOT
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}


def test_detect_reads_nvidia_smi_and_honours_cuda_visible_devices(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nfor i in 0 1 2; do echo \"GPU $i: NVIDIA H200 (UUID: GPU-$i)\"; done\n"
                    "echo '  MIG 1g.18gb Device 0: (UUID: MIG-x)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpus.detect({}) == ["0", "1", "2"]
    assert gpus.detect({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"]
    assert gpus.detect({"CUDA_VISIBLE_DEVICES": ""}) == []
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert gpus.detect({}) == []


def test_devices_counts_fakes_and_rejects():
    assert gpus.devices(None, True, ["3", "4"]) == ["3", "4"]
    assert gpus.devices("1", True, ["3", "4"]) == ["3"]
    assert gpus.devices(None, True, []) == ["0"]
    assert gpus.devices(4, True, []) == ["0", "1", "2", "3"]
    assert gpus.devices(4, False, []) == []
    for bad, words in (("two", "gpus='two'"), (0, ">= 1"), (3, "only 2 GPU")):
        with pytest.raises(ValueError, match=words):
            gpus.devices(bad, True, ["0", "1"])


def test_shortest_first_ranks_the_cheapest_batch_highest():
    assert gpus.shortest_first({"a": 30, "b": 10, "c": 20, "d": 10}) == {"b": 4, "d": 3, "c": 2, "a": 1}
    assert gpus.shortest_first({}) == {}


def test_assign_is_longest_first_onto_the_least_loaded_gpu():
    # Worked by hand: a(5)->0, b(4)->1, c(3)->1 (4<5), d(3)->0 (5<7), e(2)->1 (7<8); loads 8 and 9.
    placed = gpus.assign({"a": 5, "b": 4, "c": 3, "d": 3, "e": 2}, ["0", "1"])
    assert placed == {"a": "0", "b": "1", "c": "1", "d": "0", "e": "1"}
    assert gpus.assign({"a": 1}, []) == {}


def test_plan_resources_per_host_and_on_a_cluster():
    host = gpus.Plan(("4", "7"), 1000, cluster=False, use_gpu=True)
    assert host.pools() == {"gpu0_mem_mb": 1000, "gpu1_mem_mb": 1000}
    res = host.resources({"x": "7"}, lambda wc: wc, 300, {})
    assert {k: f("x") for k, f in res.items()} == {"gpu0_mem_mb": 0, "gpu1_mem_mb": 300,
                                                   "gpu_env": "CUDA_VISIBLE_DEVICES=7"}
    slurm = gpus.Plan((), 1000, cluster=True, use_gpu=True)
    assert slurm.pools() == {}
    assert slurm.resources({}, str, 300, {"mem_mb": 8000}) == {"gpu_env": "", "mem_mb": 8000, "runtime": 60,
                                                               "gpu": 1}
    cpu_cluster = gpus.Plan((), 0, cluster=True, use_gpu=False)
    assert "gpu" not in cpu_cluster.resources({}, str, 0, {"runtime_min": 5})


def test_per_gpu_pools_are_kept_by_snakemakes_scheduler(tmp_path):
    """Two GPUs, a 100 MB pool each, 60 MB jobs: two jobs at a time, never two at once on one GPU."""
    (tmp_path / "Snakefile").write_text(f"""
import sys
sys.path.insert(0, {str(ROOT / 'src')!r})
from statemix import gpus

PLAN = gpus.Plan(("0", "1"), 100, cluster=False, use_gpu=True)
for name, mb in PLAN.pools().items():
    workflow.register_resource(name, mb)
JOBS = [f"j{{i}}" for i in range(6)]
PLACED = gpus.assign({{j: 1 for j in JOBS}}, PLAN.gpus)
rule all:
    input: expand("out/{{j}}.txt", j=JOBS)
rule t:
    output: "out/{{j}}.txt"
    resources: **PLAN.resources(PLACED, lambda wc: wc.j, 60, {{}})
    shell: "{{resources.gpu_env}} sh -c 'echo $CUDA_VISIBLE_DEVICES $(date +%s.%N); sleep 0.5; date +%s.%N' > {{output}}"
""")
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "4", "-q"], cwd=tmp_path, env=ENV, check=True,
                   capture_output=True)
    spans = {}
    for f in (tmp_path / "out").iterdir():
        gpu, start, end = f.read_text().split()
        spans.setdefault(gpu, []).append((float(start), float(end)))
    assert sorted(spans) == ["0", "1"] and all(len(s) == 3 for s in spans.values())
    for s in spans.values():
        s.sort()
        assert all(a[1] <= b[0] for a, b in zip(s, s[1:])), "two jobs overlapped on one GPU"
    assert min(e for e in (s[0][1] for s in spans.values())) > max(s[0][0] for s in spans.values()), \
        "the two GPUs did not run side by side"


def test_dry_run_spreads_trainings_over_four_faked_gpus():
    """STATEMIX_GPU=1 on a CPU machine with --config gpus=4: each training on one GPU, sees only it, balanced."""
    env = dict(ENV, STATEMIX_GPU="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--nolock", "--cores", "2",
                          "--config", "grid=smoke", "gpus=4"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    jobs = re.findall(r"rule train:.*?resources: ([^\n]*)\n.*?Shell command: CUDA_VISIBLE_DEVICES=(\d) [^\n]*"
                      r"--out \$\(dirname (\S+)/metrics.json\)", text, re.S)
    runs = grids.load("smoke").runs
    assert sorted(j[2] for j in jobs) == sorted(runs)
    for res, gpu, _ in jobs:
        pools = dict(re.findall(r"gpu(\d)_mem_mb=(\d+)", res))
        assert pools == {str(i): ("500" if str(i) == gpu else "0") for i in range(4)}, res
        assert f"gpu_env=CUDA_VISIBLE_DEVICES={gpu}" in res
    counts = Counter(gpu for _, gpu, _ in jobs)
    # Every smoke training has the same step budget, so longest-first placement is round-robin-even.
    assert sorted(counts) == ["0", "1", "2", "3"] and max(counts.values()) - min(counts.values()) <= 1
