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
