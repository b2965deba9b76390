"""Atomic writes leave old or new content, never a partial file; hashes are stable."""
import hashlib
import json
import os

import numpy as np
import pytest

from statemix import io


def test_roundtrips(tmp_path):
    io.atomic_write_text(tmp_path / "a" / "t.txt", "héllo")
    assert (tmp_path / "a" / "t.txt").read_text(encoding="utf-8") == "héllo"
    io.atomic_write_json(tmp_path / "j.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "j.json").read_text()) == {"a": [1, 2], "b": 1}
    arr = np.arange(12, dtype=np.int64).reshape(3, 4)
    io.atomic_save_npy(tmp_path / "x.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "j.json", "x.npy"]


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    io.atomic_write_bytes(target, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        io.atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_sha256_array_covers_dtype_shape_and_bytes():
    a = np.array([[1, 2], [3, 4]], dtype=np.int64)
    expected = hashlib.sha256(b"<i8|(2, 2)|" + a.tobytes()).hexdigest()
    assert io.sha256_array(a) == expected
    assert io.sha256_array(np.asfortranarray(a)) == expected
    assert io.sha256_array(a.reshape(4)) != expected
    assert io.sha256_array(a.astype(np.int32)) != expected
    assert io.sha256_array(np.zeros((0, 3))) == hashlib.sha256(b"<f8|(0, 3)|").hexdigest()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        io.atomic_write_text(tmp_path / "t.txt", "x")
        io.atomic_save_npy(tmp_path / "a.npy", np.zeros(2))
    finally:
        os.umask(old)
    assert {oct(os.stat(tmp_path / n).st_mode & 0o777) for n in ("t.txt", "a.npy")} == {oct(mode)}
