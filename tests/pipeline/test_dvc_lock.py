"""The committed dvc.lock matches the working tree, so `dvc status` on a fresh clone reports the committed
stages up to date (outputs that only need `dvc pull` aside) and `dvc repro` retrains nothing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from statemix import grids

pytestmark = pytest.mark.slow  # dvc status over the whole pipeline: `make test-all` runs it, `make test` skips it

ROOT = grids.ROOT
BIN = Path(sys.executable).parent


def _stage_outputs() -> set:
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    grid = dvc["vars"][0]["grid"]
    outs = set()
    for body in dvc["stages"].values():
        for key in ("outs", "metrics", "plots"):
            outs |= {(next(iter(o)) if isinstance(o, dict) else o).replace("${grid}", grid) for o in body.get(key, [])}
    return outs


def stale_entries(status: dict, produced: set) -> dict:
    """What `dvc status --json` reports beyond outputs not pulled: {stage: ['path: change', ...]}."""
    stale = {}
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):
                stale.setdefault(stage, []).append(entry)
                continue
            for path, what in entry.get("changed deps", {}).items():
                if not (what == "deleted" and path in produced):
                    stale.setdefault(stage, []).append(f"{path}: {what}")
            for kind in set(entry) - {"changed deps", "changed outs"}:
                stale.setdefault(stage, []).append(f"{kind}: {entry[kind]}")
    return stale


def test_stale_entries_ignores_only_unpulled_outputs():
    status = {"train": [{"changed deps": {"data/cpu": "deleted", "src/statemix/train.py": "modified"}},
                        {"changed outs": {"results/cpu": "not in cache"}}],
              "report": [{"changed deps": {"params/grids/cpu.yaml": {"report": "modified"}}}, "changed command"]}
    assert stale_entries(status, {"data/cpu", "results/cpu"}) == {
        "train": ["src/statemix/train.py: modified"],
        "report": ["params/grids/cpu.yaml: {'report': 'modified'}", "changed command"]}


def test_committed_dvc_lock_is_up_to_date():
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["dvc", "status", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    stale = stale_entries(json.loads(done.stdout or "{}"), _stage_outputs())
    assert not stale, ("dvc.lock does not match the working tree (a fresh clone's `dvc repro` would rerun these "
                       f"stages): {stale}. Refresh it with `make lock` (dvc repro on the cpu grid; Snakemake reruns "
                       "only the affected jobs) and commit dvc.lock with reports/cpu.")
