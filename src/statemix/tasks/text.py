"""Byte-level language modelling on a real-text corpus shipped with the code (no download).

The corpus is a fixed selection of CPython 3.11.7's standard library source (``Lib/**/*.py``, PSF License
2.0, see ``corpus/LICENSE``): real, human-written code with prose comments and docstrings. It is carried
in the repository as ``corpus/cpython-3.11.7-lib.tar.xz`` rather than read from the interpreter at run
time, because the stdlib differs between machines (3.11 here, 3.12 on the GPU image). ``corpus.json``
records the archive's sha256 and every document's sha256; ``load_corpus`` checks both and fails naming
the file on any mismatch, so the same bytes are used everywhere.
``python -m statemix.tasks.text build SRC_LIB`` regenerates archive and manifest from a CPython 3.11.7 Lib.

Tokens are bytes (vocabulary 256): no tokenizer to train or pin, exact and reversible, and a byte-level
model has to carry more context in its state than a subword model does, which is what the study compares.
Perplexity is per byte (``log2(ppl)`` is bits per byte).

Splits are by document, so no window straddles two splits: documents are ordered by the sha256 of
their path; the first ones go to ``test`` until it holds ``HELD_OUT`` of the bytes, the next to
``valid`` likewise, the rest to ``train``. Each document is preceded by byte 0 (a document boundary;
it never occurs in the text). Examples are windows of ``seq_len + 1`` bytes; inputs are the first
``seq_len``, targets the last ``seq_len`` (next byte, every position scored). Windows tile their part
without overlap, so an epoch over the default train count sees each train byte once; held-out tiles
start at byte 0, train tiles at a random phase in ``[0, seq_len)`` (a subset of them, drawn at random,
when ``num_examples`` asks for fewer), both from the task's seeded generator.

The pipeline's ``test`` split is the per-epoch evaluation split, on which the trainer selects the
reported epoch. For this task it holds the corpus's ``valid`` part by default (``eval_part``);
``eval_part=test`` gives the untouched test documents.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import sys
import tarfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from statemix.tasks.common import require

CORPUS_DIR = Path(__file__).with_name("corpus")
MANIFEST = CORPUS_DIR / "corpus.json"
ARCHIVE = "cpython-3.11.7-lib.tar.xz"
SOURCE_VERSION = "3.11.7"
PARTS = ("train", "valid", "test")
HELD_OUT = 0.05
TARGET_BYTES = 2_600_000
MAX_FILE_BYTES = 120_000
BOUNDARY = 0
VOCAB = 256
EXCLUDED = ("test", "tests", "idlelib", "lib2to3", "ensurepip", "tkinter", "turtledemo", "site-packages",
            "encodings", "pydoc_data", "__pycache__")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def select_files(lib: Path) -> list[str]:
    """The corpus's documents under a CPython Lib folder: relative paths, in split order (sha256 of path)."""
    paths = []
    for p in lib.rglob("*.py"):
        rel = p.relative_to(lib)
        if any(part in EXCLUDED or part.startswith(("config-", "test_")) for part in rel.parts):
            continue
        if p.stat().st_size <= MAX_FILE_BYTES:
            paths.append(rel.as_posix())
    paths.sort(key=lambda r: _sha(r.encode()))
    chosen, total = [], 0
    for rel in paths:
        if total >= TARGET_BYTES:
            break
        chosen.append(rel)
        total += (lib / rel).stat().st_size
    return chosen


def assign_parts(sizes: list[int]) -> list[str]:
    """Part of each document, in order: test until it holds HELD_OUT of the bytes, then valid, then train."""
    total, parts, filled = sum(sizes), [], {"test": 0, "valid": 0}
    for size in sizes:
        part = next((p for p in ("test", "valid") if filled[p] < HELD_OUT * total), "train")
        if part != "train":
            filled[part] += size
        parts.append(part)
    return parts


def build(lib: Path, out: Path = CORPUS_DIR) -> dict:
    """Write the archive and corpus.json from a CPython Lib folder; refuses another Python version."""
    version = sys.version.split()[0]
    if version != SOURCE_VERSION or not (lib / "os.py").exists():
        raise ValueError(f"build: needs the Lib folder of CPython {SOURCE_VERSION}; got {lib} under "
                         f"Python {version}")
    files = select_files(lib)
    texts = [(lib / rel).read_bytes() for rel in files]
    for rel, data in zip(files, texts):
        if BOUNDARY in data:
            raise ValueError(f"build: {rel} contains byte {BOUNDARY}, the document boundary")
        data.decode("utf-8")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for rel, data in zip(files, texts):
            info = tarfile.TarInfo(rel)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    archive = lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME)
    parts = assign_parts([len(t) for t in texts])
    manifest = {"source": f"CPython {SOURCE_VERSION} Lib/**/*.py (PSF License 2.0)", "archive": ARCHIVE,
                "archive_sha256": _sha(archive), "held_out": HELD_OUT,
                "documents": [{"path": rel, "bytes": len(t), "sha256": _sha(t), "part": part}
                              for rel, t, part in zip(files, texts, parts)]}
    manifest["corpus_sha256"] = _sha("".join(d["sha256"] for d in manifest["documents"]).encode())
    out.mkdir(parents=True, exist_ok=True)
    (out / ARCHIVE).write_bytes(archive)
    (out / "corpus.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


@lru_cache(maxsize=1)
def load_corpus() -> tuple[dict, dict]:
    """(manifest, {part: uint8 array of the part's documents, each after a boundary byte}), checked by sha256."""
    manifest = json.loads(MANIFEST.read_text())
    path = CORPUS_DIR / manifest["archive"]
    archive = path.read_bytes()
    if _sha(archive) != manifest["archive_sha256"]:
        raise ValueError(f"{path}: sha256 {_sha(archive)} does not match {MANIFEST} "
                         f"({manifest['archive_sha256']}); the corpus file is damaged or was changed")
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(archive)), mode="r") as tar:
        texts = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    chunks = {part: [] for part in PARTS}
    for doc in manifest["documents"]:
        data = texts.get(doc["path"])
        if data is None or _sha(data) != doc["sha256"]:
            raise ValueError(f"{path}: document {doc['path']!r} is missing or does not match its sha256 "
                             f"in {MANIFEST}")
        chunks[doc["part"]] += [bytes([BOUNDARY]), data]
    return manifest, {p: np.frombuffer(b"".join(c), dtype=np.uint8) for p, c in chunks.items()}


def source() -> dict:
    """The corpus identity recorded in every lm dataset manifest: what it is and its sha256s."""
    manifest = load_corpus()[0]
    return {key: manifest[key] for key in ("source", "archive", "archive_sha256", "corpus_sha256")}


def num_windows(seq_len: int, part: str) -> int:
    """How many windows of seq_len scored bytes tile one part (train leaves room for a phase up to seq_len)."""
    size = len(load_corpus()[1][part])
    return (size - seq_len) // seq_len if part == "train" else (size - 1) // seq_len


def check(p: dict) -> None:
    """Validate lm parameters."""
    require(p["seq_len"] >= 2, "seq_len", p["seq_len"], "an int >= 2")
    require(p["eval_part"] in ("valid", "test"), "eval_part", p["eval_part"], "'valid' or 'test'")


def generate_lm(rng, n, split, seq_len, eval_part):
    """``(inputs, targets)`` int64 ``[n, seq_len]``: byte windows and their next bytes, all scored."""
    text = load_corpus()[1]["train" if split == "train" else eval_part]
    if len(text) <= seq_len:
        raise ValueError(f"task parameter 'seq_len' = {seq_len} is invalid; allowed: < {len(text)}, the "
                         f"{split} part's length in bytes")
    train = split == "train"
    available = num_windows(seq_len, "train" if train else eval_part)
    if n > available:
        raise ValueError(f"num_examples = {n} is invalid for the lm {split} split; allowed: <= {available} "
                         f"windows of {seq_len} bytes in the corpus's {'train' if train else eval_part} part")
    starts = np.arange(available) * seq_len
    if train:
        starts = int(rng.integers(0, seq_len)) + np.sort(rng.permutation(available)[:n]) * seq_len
    else:
        starts = starts[:n]
    windows = text[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64)
    return windows[:, :-1], windows[:, 1:].copy()


def vocab_size(_params: dict) -> int:
    return VOCAB


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m statemix.tasks.text", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="rebuild the shipped corpus from a CPython 3.11.7 Lib folder")
    b.add_argument("lib", type=Path)
    sub.add_parser("info", help="check the shipped corpus and print its parts")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            build(args.lib)
        manifest, parts = load_corpus()
    except ValueError as err:
        print(f"statemix.tasks.text: error: {err}", file=sys.stderr)
        return 2
    docs = manifest["documents"]
    for part in PARTS:
        print(f"{part}: {sum(d['part'] == part for d in docs)} documents, {len(parts[part]):,} bytes")
    print(f"corpus_sha256 {manifest['corpus_sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
