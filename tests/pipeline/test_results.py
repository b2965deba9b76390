"""Committed finished runs (statemix.results): a fresh clone with arbitrary mtimes plans no training, and the
small per-run files pack and unpack intact."""

import io
import os
import random
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from statemix import results

from test_pipeline import ENV, ROOT, job_counts, sh

pytestmark = pytest.mark.slow  # trains and clones a tiny committed grid: `make test-all` runs it, `make test` skips it

TINY = {
    "name": "paper", "description": "tiny committed grid for the persistence test", "seeds": [0],
    "threads": 1, "gpu_mem_mb": 500, "benchmark": False, "results": "committed",
    "deviations": ["toy sizes"], "report": {"thresholds": [0.5]},
    "set": {"model": {"d_model": 16, "n_layers": 1}, "train": {"max_epochs": 1, "batch_size": 16,
                                                               "eval_batch_size": 32},
            "track": {"enabled": False, "figure": False}},
    "data": {"train": {"num_examples": 32}, "test": {"num_examples": 16}},
    "tasks": {"S3": {"task": "permutation", "params": {"group": "S3", "seq_len": 8}}},
    "studies": {"main": {"section": "main", "description": "two archs", "tasks": ["S3"],
                         "archs": ["lru", "bdlru-m2"], "widths": [8]}},
}
RUNS = ["results/paper/S3/lru/base/w8/s0", "results/paper/S3/bdlru-m2/base/w8/s0"]


def snake(cwd, *args, gpu="0", check=True, track="false", env=None):
    env = dict(env or ENV, STATEMIX_GPU=gpu)
    env.pop("PYTHONPATH", None)
    return sh([sys.executable, "-m", "snakemake", "--cores", "2", *args, f"track={track}"], cwd, check=check, env=env)


def git(cwd, *args):
    return sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A copy of the project whose paper grid is TINY, trained once on the CPU and committed."""
    dst = tmp_path_factory.mktemp("origin")
    for f in sh(["git", "ls-files", "-co", "--exclude-standard"], ROOT).stdout.split():
        if (ROOT / f).is_file() and not f.startswith(("reports/", "results/")):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    (dst / "params/grids/paper.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    snake(dst, "--config", "grid=paper", "runs=all")
    git(dst, "init", "-q")
    git(dst, "add", "-A")
    git(dst, "commit", "-q", "-m", "tiny paper grid, trained")
    return dst


def fresh_clone(origin, dst):
    """git clone, then every file gets a random mtime (what a checkout guarantees: nothing)."""
    git(origin.parent, "clone", "-q", str(origin), str(dst))
    rng = random.Random(0)
    for path in dst.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            t = 1_600_000_000 + rng.randrange(10**8)
            os.utime(path, (t, t))
    return dst


@pytest.mark.slow
def test_git_keeps_the_small_files_only(trained):
    tracked = set(sh(["git", "ls-files", "results"], trained).stdout.split())
    assert tracked == {f"{r}/{name}" for r in RUNS for name in results.FILES}
    assert all((trained / r / "checkpoint.pt").exists() for r in RUNS)


@pytest.mark.slow
def test_fresh_clone_rebuilds_the_report_without_training(trained, tmp_path):
    clone = fresh_clone(trained, tmp_path / "clone")
    for gpu in ("0", "1"):
        text = snake(clone, "-n", "--config", "grid=paper", gpu=gpu).stdout
        counts = job_counts(text) if "Job stats:" in text else {}
        assert not {"train", "generate"} & set(counts), (gpu, counts)
    snake(clone, "--config", "grid=paper")
    assert not (clone / "logs/paper/train").exists() and not (clone / "data").exists()
    report = (clone / "reports/paper/report.md").read_text()
    assert "## Claims" in report and "toy sizes" in report
    for r in RUNS:
        assert not (clone / r / "checkpoint.pt").exists()


@pytest.mark.slow
def test_fresh_clone_imports_every_finished_run_into_mlflow_once(trained, tmp_path):
    clone = fresh_clone(trained, tmp_path / "clone")
    env = dict(ENV, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    marker = clone / "logs/paper/mlflow_import.txt"
    snake(clone, str(marker.relative_to(clone)), "--config", "grid=paper", track="true", env=env)
    assert marker.read_text().strip() == "imported 2 run(s); 0 already present"
    snake(clone, str(marker.relative_to(clone)), "--forcerun", "mlflow_import", "--config", "grid=paper",
          track="true", env=env)
    assert marker.read_text().strip() == "imported 0 run(s); 2 already present"


@pytest.mark.slow
def test_a_missing_run_is_the_only_training_planned(trained, tmp_path):
    clone = fresh_clone(trained, tmp_path / "clone")
    git(clone, "rm", "-q", "-r", RUNS[0])
    counts = job_counts(snake(clone, "-n", "--config", "grid=paper", gpu="1").stdout)
    assert counts.get("train") == 1 and counts.get("generate") == 2
    no_gpu = snake(clone, "-n", "--config", "grid=paper").stdout
    assert "train" not in job_counts(no_gpu) if "Job stats:" in no_gpu else True


@pytest.mark.slow
def test_a_run_the_grid_no_longer_describes_stops_the_workflow(trained, tmp_path):
    clone = fresh_clone(trained, tmp_path / "clone")
    spec = dict(TINY, set={**TINY["set"], "train": {**TINY["set"]["train"], "max_epochs": 2}})
    (clone / "params/grids/paper.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    out = snake(clone, "-n", "--config", "grid=paper", check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert RUNS[0] in text and "train.max_epochs: 1 -> 2" in text
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    check = subprocess.run([sys.executable, "-m", "statemix.results", "check", "paper", "--remove-stale"],
                           cwd=clone, env=dict(env, PYTHONPATH=str(clone / "src")), capture_output=True, text=True)
    assert check.returncode == 0 and "2 stale" in check.stdout, check.stdout + check.stderr
    assert not any((clone / r).exists() for r in RUNS)


@pytest.mark.slow
def test_switching_compile_on_keeps_the_finished_runs(trained, tmp_path):
    """train.compile is outside a run's identity (config.NOT_IDENTITY): turning it on in the grid plans no
    training on a GPU machine and leaves every committed run current; a key that changes numbers (above) does not."""
    clone = fresh_clone(trained, tmp_path / "clone")
    spec = dict(TINY, set={**TINY["set"], "train": {**TINY["set"]["train"], "compile": True}})
    (clone / "params/grids/paper.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    text = snake(clone, "-n", "--config", "grid=paper", gpu="1").stdout
    assert not {"train", "generate"} & set(job_counts(text) if "Job stats:" in text else {})
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    check = subprocess.run([sys.executable, "-m", "statemix.results", "check", "paper"], cwd=clone,
                           env=dict(env, PYTHONPATH=str(clone / "src")), capture_output=True, text=True)
    assert check.returncode == 0 and "2 finished (2 ok), 0 stale" in check.stdout, check.stdout + check.stderr


def _run_folder(root, key, status="ok"):
    folder = root / key
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("model: {arch: lru}\n")
    (folder / "history.csv").write_text("epoch,train_loss\n1,0.5\n")
    (folder / "metrics.json").write_text(f'{{"status": "{status}"}}\n')
    (folder / "checkpoint.pt").write_bytes(b"\0" * 1000)
    return folder


def test_pack_then_unpack_round_trips_the_small_files(tmp_path):
    src, dst = tmp_path / "gpu", tmp_path / "here"
    for key in RUNS:
        _run_folder(src, key)
    (src / "results/paper/S3/lstm/base/w8/s0").mkdir(parents=True)
    (src / "results/paper/S3/lstm/base/w8/s0/checkpoint.pt").write_bytes(b"unfinished")
    archive = tmp_path / "out/results.tar.gz"
    assert results.pack(src / "results/paper", archive, root=src) == 2
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert names == {f"{k}/{f}" for k in RUNS for f in results.FILES}
    assert results.unpack(archive, dst) == {"added": 2, "same": 0, "replaced": 0}
    for key in RUNS:
        for f in results.FILES:
            assert (dst / key / f).read_bytes() == (src / key / f).read_bytes()
    assert results.unpack(archive, dst) == {"added": 0, "same": 2, "replaced": 0}


def test_unpack_refuses_conflicts_and_foreign_members(tmp_path):
    src, dst = tmp_path / "gpu", tmp_path / "here"
    _run_folder(src, RUNS[0])
    archive = tmp_path / "r.tar.gz"
    results.pack(src / "results", archive, root=src)
    _run_folder(dst, RUNS[0], status="failed")
    with pytest.raises(ValueError, match="different metrics.json"):
        results.unpack(archive, dst)
    assert results.unpack(archive, dst, replace=True)["replaced"] == 1
    assert (dst / RUNS[0] / "metrics.json").read_text() == '{"status": "ok"}\n'
    for name in ("../evil/metrics.json", "results/paper/x/checkpoint.pt", "/results/paper/x/metrics.json"):
        bad = tmp_path / "bad.tar.gz"
        with tarfile.open(bad, "w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
        with pytest.raises(ValueError, match="only results/"):
            results.unpack(bad, dst)
