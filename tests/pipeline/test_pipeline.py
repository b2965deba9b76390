"""The workflow end to end on the smoke grid, in a temporary copy of the project (Snakemake and DVC)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from statemix import grids

pytestmark = pytest.mark.slow  # Snakemake and DVC runs of whole grids: `make test-all` runs it, `make test` skips it

ROOT = grids.ROOT
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_DISABLE_TELEMETRY": "true",
       "DO_NOT_TRACK": "true", "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def sh(args, cwd, check=True, env=None):
    out = subprocess.run(args, cwd=cwd, env=env or ENV, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({out.returncode}):\n{out.stdout[-4000:]}\n"
                             f"{out.stderr[-4000:]}")
    return out


def snakemake(cwd, *args, check=True):
    return sh([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd, check=check)


def job_counts(text: str) -> dict:
    """The 'Job stats' table of a Snakemake dry run, as {rule: count}."""
    block = text.split("Job stats:")[-1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", block, re.M)}


def expected_counts(spec: dict, name: str | None = None) -> dict:
    """Job counts worked out from the grid file alone: one train per run left after the budget cuts, 2 splits
    per (task, seed) that a run still to train uses (a committed finished run, with its metrics.json under
    results/<name>/, takes no dataset)."""
    runs = {}
    for study_name, study in spec["studies"].items():
        for task in study["tasks"]:
            for seed in spec["seeds"]:
                for arch in study["archs"]:
                    widths = study.get("widths_by_arch", {}).get(arch, study["widths"])
                    for v in study.get("variants", ["base"]):
                        for w in widths:
                            runs.setdefault((task, arch, v, w, seed), set()).add(study_name)
    for cut in spec.get("budget", {}).get("cuts", []):
        def hit(key, studies):
            named = dict(zip(("tasks", "archs", "variants", "widths", "seeds"), key))
            return all((studies & set(cut[k])) if k == "studies" else named[k] in cut[k]
                       for k in cut if k != "why")
        runs = {k: st for k, st in runs.items() if not hit(k, st)}
    done = set()
    if name and spec.get("results") == "committed":
        done = {k for k in runs if (ROOT / "results" / name / k[0] / k[1] / k[2] / f"w{k[3]}" / f"s{k[4]}"
                                    / "metrics.json").is_file()}
    datasets = {(k[0], k[4]) for k in runs if k not in done}
    committed = {"mlflow_import": 1} if spec.get("results") == "committed" else {}
    return {"generate": 2 * len(datasets), "train": len(runs), "aggregate": 1, "report": 1, "all": 1, **committed}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project's files (tracked or not ignored) in a fresh git repo, with the smoke grid run."""
    dst = tmp_path_factory.mktemp("project")
    files = sh(["git", "ls-files", "-co", "--exclude-standard"], ROOT).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith("reports/"):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    dvc = (dst / "dvc.yaml").read_text()
    (dst / "dvc.yaml").write_text(dvc.replace("grid: cpu", "grid: smoke")
                                  .replace("--config grid=${grid}", "--config grid=${grid} track=false"))
    sh(["git", "init", "-q"], dst)
    sh(["git", "add", "-A"], dst)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "copy"], dst)
    snakemake(dst, "--config", "grid=smoke", "track=false")
    return dst


@pytest.mark.parametrize("name", ["paper", "cpu", "smoke"])
def test_dry_run_lists_expected_jobs(name):
    out = snakemake(ROOT, "-n", "--forceall", "--nolock", "--config", f"grid={name}", "runs=all")
    assert f"running grid '{name}'" in out.stderr + out.stdout
    spec = yaml.safe_load((grids.GRID_DIR / f"{name}.yaml").read_text())
    assert job_counts(out.stdout + out.stderr) == expected_counts(spec, name)


def test_every_training_gets_a_unique_readable_run_name():
    out = snakemake(ROOT, "-n", "-p", "--forceall", "--nolock", "--config", "grid=smoke")
    names = re.findall(r"--run-name (\S+)", out.stdout + out.stderr)
    grid = grids.load("smoke", check_names=False)
    assert sorted(names) == sorted(f"{r.task}/{r.arch}/{r.variant}/w{r.width}/s{r.seed}" for r in grid.runs.values())
    assert len(set(names)) == len(names) and {"S3/lru/base/w8/s0", "S5/lru/base/w8/s0"} <= set(names)
    assert "in-context-recall/hlru-m2/relu/w8/s0" in names and "in-context-recall/hlru-m2/tanh/w8/s0" in names


@pytest.mark.parametrize("mode", ["true", "arch"])
def test_batch_plan_runs_each_training_once_in_one_worker_per_task_and_variant(mode):
    """--config batch=true: every run of the grid appears in exactly one worker command, as ARCH:WIDTH,SEED,OUT,DATA;
    batch=arch: the same runs, one worker per task x variant x arch."""
    out = snakemake(ROOT, "-n", "-p", "--forceall", "--nolock", "--config", "grid=smoke", f"batch={mode}")
    text = out.stdout + out.stderr
    commands = [line for line in text.splitlines() if "-m statemix.worker" in line]
    grid = grids.load("smoke", check_names=False)
    cell = (lambda r: (r.task, r.variant)) if mode == "true" else (lambda r: (r.task, r.variant, r.arch))
    assert len(commands) == len({cell(r) for r in grid.runs.values()})
    got = [m.groups() for c in commands for m in re.finditer(r"--run ([a-z0-9-]+):(\d+),(\d+),(\S+),(\S+)", c)]
    assert sorted(path for *_, path, _ in got) == sorted(grid.runs)
    for arch, width, seed, path, data in got:
        run = grid.runs[path]
        assert (run.arch, run.width, run.seed) == (arch, int(width), int(seed))
        assert data == run.dataset_path("smoke")


def test_gpu_plan_dry_runs_with_the_benchmark():
    """The plan a GPU machine makes (forced with STATEMIX_GPU=1) parses, and adds the benchmark job."""
    env = dict(ENV, STATEMIX_GPU="1")
    out = sh([sys.executable, "-m", "snakemake", "--cores", "2", "-n", "--forceall", "--nolock"], ROOT, env=env)
    assert "running grid 'paper' (a GPU is visible)" in out.stderr + out.stdout
    spec = yaml.safe_load((grids.GRID_DIR / "paper.yaml").read_text())
    assert job_counts(out.stdout + out.stderr) == dict(expected_counts(spec, "paper"), benchmark=1)


def test_bad_grid_stops_snakemake_at_parse_time(tmp_path):
    spec = yaml.safe_load((grids.GRID_DIR / "smoke.yaml").read_text())
    spec["studies"]["main"]["widthz"] = [4]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec))
    out = snakemake(ROOT, "-n", "--nolock", "--config", f"grid={bad}", check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "studies.main" in text and "widthz" in text
    out = snakemake(ROOT, "-n", "--nolock", "--config", "gird=smoke", check=False)
    assert out.returncode != 0 and "gird" in out.stdout + out.stderr


@pytest.mark.slow
def test_smoke_report_covers_every_task_and_arch(project):
    spec = yaml.safe_load((project / "params/grids/smoke.yaml").read_text())
    table = pd.read_csv(project / "reports/smoke/runs.csv")
    assert len(table) == expected_counts(spec)["train"]
    assert set(table["status"]) == {"ok"}
    report = (project / "reports/smoke/report.md").read_text()
    archs = {a for s in spec["studies"].values() for a in s["archs"]}
    for word in [*spec["tasks"], *archs]:
        assert f"| {word} |" in report or f"### {word}" in report, word
    figures = {p.name for p in (project / "reports/smoke/figures").iterdir()}
    assert {"accuracy_vs_params.png", "accuracy_vs_state.png", "order.png", "norm.png"} <= figures
    assert (project / "reports/smoke/report.html").stat().st_size > 10_000
    metrics = json.loads((project / "reports/smoke/metrics.json").read_text())
    assert metrics["runs"] == len(table)
    assert snakemake(project, "-n", "--config", "grid=smoke").stdout.count("Nothing to be done") == 1
    logs = sorted((project / "logs/smoke/train").rglob("*.log"))
    assert len(logs) == len(table)
    for log in logs:
        lines = log.read_text().splitlines()
        assert any(line.startswith("epoch 1/1 ") and "steps/s" in line for line in lines), log
        assert "statemix.train: " in lines[-1] and "done, 1 epoch(s)" in lines[-1], log


@pytest.mark.slow
def test_param_and_code_changes_rerun_only_affected_jobs(project):
    path = project / "params/grids/smoke.yaml"
    original = path.read_text()
    assert "Nothing to be done" in snakemake(project, "-n", "--config", "grid=smoke").stdout
    spec = yaml.safe_load(original)
    spec["tasks"]["S3"]["params"]["seq_len"] = 10
    spec["tasks"]["S4"]["set"] = {"train": {"lr": 0.002}}
    try:
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        counts = job_counts(snakemake(project, "-n", "--config", "grid=smoke").stdout)
    finally:
        path.write_text(original)
    only = {**spec, "studies": {k: {**s, "tasks": [t for t in s["tasks"] if t in ("S3", "S4")]}
                                for k, s in spec["studies"].items() if set(s["tasks"]) & {"S3", "S4"}}}
    assert counts == {**expected_counts(only), "generate": 2}
    code = project / "src/statemix/report.py"
    source = code.read_text()
    os.utime(code)
    assert "Nothing to be done" in snakemake(project, "-n", "--config", "grid=smoke").stdout
    try:
        code.write_text(source + "\n")
        assert job_counts(snakemake(project, "-n", "--config", "grid=smoke").stdout) == {"report": 1, "all": 1}
    finally:
        code.write_text(source)


@pytest.mark.slow
def test_aggregate_logs_every_run_to_mlflow_once(project, tmp_path):
    env = {**ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    args = [sys.executable, "-m", "statemix.aggregate", "--grid", "smoke", "--parquet", f"{tmp_path}/t.parquet",
            "--csv", f"{tmp_path}/t.csv", "--metrics", f"{tmp_path}/m.json", "--scaling", f"{tmp_path}/s.csv"]
    env["PYTHONPATH"] = str(project / "src")
    sh(args, project, env=env)
    first = pd.read_csv(tmp_path / "t.csv")
    sh(args, project, env=env)
    second = pd.read_csv(tmp_path / "t.csv")
    assert first["mlflow_run_id"].notna().all() and first["mlflow_run_id"].nunique() == len(first)
    assert list(first["mlflow_run_id"]) == list(second["mlflow_run_id"])


@pytest.mark.slow
def test_dvc_repro_stage_and_push_pull(project, tmp_path):
    sh(["dvc", "repro", "aggregate"], project)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert {"generate", "train", "aggregate"} <= set(lock["stages"])
    assert "reports/smoke/metrics.json" in sh(["dvc", "metrics", "show"], project).stdout
    sh(["dvc", "remote", "add", "--local", "-f", "-d", "tmp", str(tmp_path / "remote")], project)
    sh(["dvc", "push"], project)
    before = {p.relative_to(project): p.read_bytes() for p in (project / "data/smoke").rglob("*.npy")}
    shutil.rmtree(project / "data/smoke")
    shutil.rmtree(project / ".dvc/cache")
    sh(["dvc", "pull"], project)
    after = {p.relative_to(project): p.read_bytes() for p in (project / "data/smoke").rglob("*.npy")}
    assert before == after and before
    assert "train" not in job_counts(snakemake(project, "-n", "--config", "grid=smoke").stdout)


def test_snakefile_and_dvc_name_the_same_stages_and_outputs():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    grid = dvc["vars"][0]["grid"]
    rules = snakemake(ROOT, "--list-rules", "--config", f"grid={grid}").stdout.split("\n")
    rules = {line.split()[0] for line in rules if line.strip()}
    assert set(dvc["stages"]) == rules - {"all", "benchmark", "mlflow_import"}
    summary = snakemake(ROOT, "--summary", "--forceall", "--nolock", "--config", f"grid={grid}").stdout
    produced = [line.split("\t")[:3:2] for line in summary.splitlines()[1:] if "\t" in line]
    for stage, body in dvc["stages"].items():
        outs = [next(iter(o)) if isinstance(o, dict) else o
                for key in ("outs", "metrics", "plots") for o in body.get(key, [])]
        outs = [o.replace("${grid}", grid) for o in outs]
        mine = [path for path, rule in produced if rule == stage]
        assert mine, stage
        for path in mine:
            assert any(path == o or path.startswith(o + "/") for o in outs), (stage, path)
        for o in outs:
            assert o.endswith(".html") or any(path == o or path.startswith(o + "/") for path in mine), (stage, o)
