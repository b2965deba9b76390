"""The workflow on a real single-node Slurm cluster (tests/slurm/cluster.sh), through Snakemake's SLURM executor.

A cut-down smoke grid (2 tasks x 2 archs, trainings tracked live) runs with profiles/slurm, logging to an
MLflow tracking server. One training is long (300 epochs) and is scancel'ed mid-training: Snakemake must
resubmit it and the new job must resume from the checkpoint. Needs root and Debian's slurm-wlm packages;
about 2-3 minutes on 2 CPU cores.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from statemix import grids

ROOT = grids.ROOT
CLUSTER = Path(__file__).with_name("cluster.sh")
PORT = 5077
LONG = "S3"
MISSING = [t for t in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sacct") if not shutil.which(t)]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"Slurm not installed ({', '.join(MISSING)} missing): "
                                             "apt-get install slurmctld slurmd slurm-client munge"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting slurmctld, slurmd and munged needs root"),
]


def _grid(dst: Path) -> Path:
    """The smoke grid cut to 2 tasks x 2 archs, trainings tracked; the LONG task runs long enough to be killed."""
    spec = yaml.safe_load((grids.GRID_DIR / "smoke.yaml").read_text())
    spec["name"] = "slurm-smoke"
    spec["set"]["track"] = {"enabled": True, "figure": False}
    spec["tasks"] = {k: v for k, v in spec["tasks"].items() if k in (LONG, "compression")}
    spec["tasks"][LONG]["set"] = {"train": {"max_epochs": 300, "early_stop_acc": 0}}
    spec["studies"] = {"main": {**spec["studies"]["main"], "tasks": [LONG, "compression"]}}
    spec.pop("variants")
    path = dst / "slurm-smoke.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _copy_project(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(("reports/", "tests/")):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)


def _kill_long_training(project: Path, logs: Path, proc) -> tuple:
    """Wait until the LONG training has checkpointed a few epochs, scancel its job; return (job id, history)."""
    run = next((project / "results/slurm-smoke" / LONG).glob("lru/base/w*/s0"), None)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        run = run or next((project / "results/slurm-smoke" / LONG).glob("lru/base/w*/s0"), None)
        history = run / "history.csv" if run else None
        if history and history.exists() and len(history.read_text().splitlines()) > 4:
            job = next((logs / "rule_train").glob(f"{LONG}_lru_*/*.log"))
            subprocess.run(["scancel", job.stem], check=True)
            while subprocess.run(["squeue", "-h", "-j", job.stem, "-t", "PD,R,CG"], capture_output=True,
                                 text=True).stdout.strip():
                time.sleep(0.1)
            return job.stem, history.read_text().splitlines()
        time.sleep(0.2)
    raise AssertionError("the long training never checkpointed")


def _mlflow_runs(uri: str, experiment: str) -> list:
    def post(path, body):
        req = urllib.request.Request(f"{uri}/api/2.0/mlflow/{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req, timeout=30).read())

    exp = json.loads(urllib.request.urlopen(
        f"{uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}", timeout=30).read())
    return post("runs/search", {"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 1000})["runs"]


@pytest.fixture
def cluster(tmp_path):
    state = tmp_path / "cluster"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    up = subprocess.run([str(CLUSTER), "up", str(state), str(PORT)], env=env, capture_output=True, text=True)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield state, dict(line.split("=", 1) for line in up.stdout.split())
    finally:
        pids = {p.name: int(p.read_text()) for p in state.glob("*.pid")}
        subprocess.run([str(CLUSTER), "down", str(state)], env=env, check=True)
        alive = [name for name, pid in pids.items() if Path(f"/proc/{pid}").exists()]
        assert not alive, f"daemons left running: {alive}"


def test_smoke_grid_through_slurm_survives_a_scancel(tmp_path, cluster):
    state, cluster_env = cluster
    project = tmp_path / "project"
    _copy_project(project)
    grid = _grid(tmp_path)
    env = {**os.environ, **cluster_env, "STATEMIX_GPU": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(project / "src")}
    args = [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm", "--jobs", "2",
            "--retries", "1", "--slurm-init-seconds-before-status-checks", "2", "--slurm-no-account",
            "--config", f"grid={grid}"]
    out = open(tmp_path / "snakemake.log", "w")
    proc = subprocess.Popen(args, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        killed, before = _kill_long_training(project, project / "logs/slurm", proc)
        rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=120)
    log = (tmp_path / "snakemake.log").read_text()
    assert rc == 0, log[-6000:]

    spec = yaml.safe_load(grid.read_text())
    runs = grids.load(str(grid)).runs
    expected = {"generate": 2 * len(spec["tasks"]), "train": len(runs), "aggregate": 1, "report": 1}
    slurm_logs = {}
    for path in (project / "logs/slurm").rglob("*.log"):
        slurm_logs.setdefault(path.relative_to(project / "logs/slurm").parts[0][len("rule_"):], []).append(path.stem)
    assert {rule: len(ids) for rule, ids in slurm_logs.items()} == {**expected, "train": len(runs) + 1}
    sacct = subprocess.run(["sacct", "--completion", "-n", "-P", "-o", "jobid,jobname,state"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    states = {jobid: st for jobid, _, st in (line.split("|") for line in sacct)}
    ids = [i for rule_ids in slurm_logs.values() for i in rule_ids]
    assert sorted(states) == sorted(ids)
    assert states[killed] == "CANCELLED" and {s for i, s in states.items() if i != killed} == {"COMPLETED"}

    long_run = project / next(k for k, r in runs.items() if r.task == LONG and r.arch == "lru")
    after = (long_run / "history.csv").read_text().splitlines()
    assert len(after) == 301 and 3 < len(before) < 301
    assert after[:len(before) - 1] == before[:-1], "the resubmitted job restarted instead of resuming"

    tracked = _mlflow_runs(cluster_env["MLFLOW_TRACKING_URI"], "statemix-slurm-smoke")
    finished = [r for r in tracked if r["info"]["status"] == "FINISHED"]
    keys = sorted(next(t["value"] for t in r["data"]["tags"] if t["key"] == "statemix_run_key") for r in finished)
    on_disk = sorted(hashlib.sha256((project / k / "metrics.json").read_bytes()).hexdigest() for k in runs)
    assert keys == on_disk
    # the scancelled job's live run ended KILLED; its resubmission logged a new run, FINISHED above
    ended = [(r["info"]["status"], next(t["value"] for t in r["data"]["tags"] if t["key"] == "out_dir"))
             for r in tracked if r["info"]["status"] != "FINISHED"]
    assert [status for status, _ in ended] == ["KILLED"]
    rel = long_run.relative_to(project).parts
    assert Path(ended[0][1]).parts[-len(rel):] == rel
