"""Provenance names the CPU model (and on a GPU, its name and driver), so runs on different hardware can be told
apart in the run table."""
import re
import subprocess
from pathlib import Path

import pytest
import torch

from statemix import provenance


def test_cpu_model_comes_from_cpuinfo():
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    if not found:
        pytest.skip("no model name in /proc/cpuinfo")
    assert provenance.cpu_model() == found[1].strip()
    assert provenance.describe_hardware(torch.device("cpu")).startswith(found[1].strip())
    prov = provenance.provenance(torch.device("cpu"), {}, Path("."))
    assert prov["cpu_model"] == found[1].strip() and prov["gpu"] is None and prov["gpu_driver"] is None


@pytest.mark.gpu
def test_gpu_name_and_driver_are_recorded():
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    name, driver = (part.strip() for part in smi.split(","))
    prov = provenance.provenance(torch.device("cuda"), {}, Path("."))
    assert prov["gpu_driver"] == driver and prov["gpu"] == torch.cuda.get_device_name(0)
    assert driver in prov["hardware"] and prov["gpu"] in prov["hardware"]


def _git(root, *cmd):
    subprocess.run(["git", "-C", str(root), *cmd], check=True, capture_output=True)


def test_code_id_finds_the_commit_without_the_copys_git_metadata(tmp_path):
    """A working tree copied without its .git (as to a GPU machine) has the code id of the commit it came from,
    and `commits` finds that commit, not its neighbours; an edit gives another id."""
    repo = tmp_path / "repo"
    code = repo / "src" / "statemix"
    (code / "ops").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "config", "user.name", "t")
    (code / "a.py").write_text("x = 1\n")
    (code / "ops" / "b.py").write_text("y = 2\n")
    (repo / "README.md").write_text("not code\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    first = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    copy = tmp_path / "copy"
    (copy / "src" / "statemix" / "ops").mkdir(parents=True)
    for rel in ("a.py", "ops/b.py"):
        (copy / "src" / "statemix" / rel).write_bytes((code / rel).read_bytes())
    (copy / "src" / "statemix" / "notes.txt").write_text("not .py: not code\n")
    wanted = provenance.code_id(copy)
    (code / "a.py").write_text("x = 3\n")
    _git(repo, "commit", "-qam", "two")
    assert provenance.code_id(repo) != wanted
    assert provenance.commits_with_code(wanted, root=repo) == [first]
    assert provenance.main(["commits", "nothex"]) == 2
