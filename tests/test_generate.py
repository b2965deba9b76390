"""The generate stage CLI: files, manifest, idempotent re-runs, recovery, clear errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from statemix import generate
from statemix.io import sha256_array
from statemix.tasks import make_dataset

SRC = str(Path(__file__).resolve().parents[1] / "src")
ARGS = ["--task", "selective-copying", "--split", "test", "--seed", "3",
        "--set", "num_examples=50", "--set", "seq_len=64", "--set", "num_tokens_to_copy=8"]


def test_writes_arrays_and_manifest(tmp_path):
    out = tmp_path / "d" / "test"
    generate.main(ARGS + ["--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["inputs.npy", "manifest.json", "targets.npy"]
    m = json.loads((out / "manifest.json").read_text())
    x, y = np.load(out / "inputs.npy"), np.load(out / "targets.npy")
    ex, ey = make_dataset("selective-copying", 50, 3, "test", seq_len=64, num_tokens_to_copy=8)
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(y, ey)
    assert m["task"] == "selective-copying" and m["split"] == "test" and m["seed"] == 3
    assert m["params"] == {"vocab_size": 16, "seq_len": 64, "num_tokens_to_copy": 8}
    assert m["num_examples"] == 50 and m["shape"] == [50, 64] and m["seq_len"] == 64
    assert m["vocab_size"] == 16 and m["backbone"] == "lm" and m["num_scored"] == 400
    assert m["sha256"] == {"inputs": sha256_array(x), "targets": sha256_array(y)}


def test_rerun_is_a_no_op_and_changes_regenerate(tmp_path):
    out = tmp_path / "train"
    generate.main(["--task", "compression", "--split", "train", "--out", str(out),
               "--set", "num_examples=20"])
    stamp = (out / "inputs.npy").stat().st_mtime_ns
    generate.main(["--task", "compression", "--split", "train", "--out", str(out),
               "--set", "num_examples=20"])
    assert (out / "inputs.npy").stat().st_mtime_ns == stamp
    m = generate.main(["--task", "compression", "--split", "train", "--out", str(out),
                   "--set", "num_examples=30"])
    assert np.load(out / "inputs.npy").shape == (30, 32) and m["num_examples"] == 30
    assert m["backbone"] == "autoencoder"


def test_damaged_or_incomplete_folder_is_rebuilt(tmp_path):
    out = tmp_path / "t"
    m = generate.generate("parity", "test", out, sets={"num_examples": "40"})
    np.save(out / "inputs.npy", np.zeros((40, 256), dtype=np.int64))
    with pytest.raises(ValueError, match="sha256"):
        generate.load(out)
    assert generate.generate("parity", "test", out, sets={"num_examples": "40"}) == m
    x, y, loaded = generate.load(out)
    assert loaded == m and sha256_array(x) == m["sha256"]["inputs"]
    os.unlink(out / "manifest.json")
    with pytest.raises(ValueError, match="no manifest.json"):
        generate.load(out)


@pytest.mark.parametrize("extra,words", [
    (["--set", "vocab"], ["--set", "key=value", "'vocab'"]),
    (["--set", "num_examples=ten"], ["num_examples", "'ten'"]),
    (["--set", "colour=red"], ["'colour'", "allowed", "num_tokens_to_copy"]),
    (["--set", "seq_len=10"], ["seq_len", "10"]),
])
def test_bad_arguments(tmp_path, extra, words):
    with pytest.raises(ValueError) as err:
        generate.main(ARGS + ["--out", str(tmp_path / "x")] + extra)
    for w in words:
        assert w in str(err.value)
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_module_cli_reports_errors_with_exit_code(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    run = subprocess.run([sys.executable, "-m", "statemix.generate", "--task", "sorting", "--split",
                          "train", "--out", str(tmp_path)], env=env, capture_output=True, text=True)
    assert run.returncode == 2
    assert "unknown task 'sorting'" in run.stderr and "in-context-recall" in run.stderr


@pytest.mark.parametrize("name", ["inputs", "targets"])
def test_truncated_array_fails_naming_the_file(tmp_path, name):
    generate.generate("parity", "train", tmp_path, seed=0, sets={"num_examples": 8, "min_len": 3, "max_len": 6})
    path = tmp_path / f"{name}.npy"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError) as err:
        generate.load(tmp_path)
    assert str(path) in str(err.value) and "truncated" in str(err.value)
