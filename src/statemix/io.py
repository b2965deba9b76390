"""Atomic file writes and content hashes shared by every pipeline stage.

Every output is written to a temporary file in the destination folder, flushed to disk
and moved into place with ``os.replace``, so a killed process leaves either the old file
or the new one, never a truncated file under the final name. Files get the mode a plain open() would give
(0o666 minus the umask, so 0o644 usually), not mkstemp's 0o600.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

_UMASK_LOCK = threading.Lock()


def _file_mode() -> int:
    """0o666 minus the process umask: the mode open() would give a new file (mkstemp's own is 0o600)."""
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (tmp file in the same folder + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (with a trailing newline) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_npy(path, array) -> Path:
    """Save ``array`` in ``.npy`` format to ``path`` atomically (no pickled objects)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def sha256_array(array) -> str:
    """Hex sha256 of an array's dtype (with byte order), shape and C-order bytes.

    Unlike hashing a ``.npy`` file this does not depend on numpy's header format, so the
    same data hashes the same under any numpy version.
    """
    a = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}|{a.shape}|".encode("ascii"))
    h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()
