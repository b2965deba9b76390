"""The lm task: the shipped corpus is checked, split by document, windowed deterministically; a tiny LM learns it."""
import shutil

import numpy as np
import pytest
import torch

from statemix.tasks import TASKS, make_dataset, text


@pytest.fixture
def fresh_corpus(monkeypatch):
    """Let a test point the loader at another corpus folder (the loader caches what it read)."""
    text.load_corpus.cache_clear()
    yield monkeypatch
    text.load_corpus.cache_clear()


def test_parts_are_disjoint_documents_and_cover_the_corpus():
    manifest, parts = text.load_corpus()
    docs = manifest["documents"]
    by_part = {p: [d for d in docs if d["part"] == p] for p in text.PARTS}
    paths = [d["path"] for d in docs]
    assert len(set(paths)) == len(paths)
    hashes = {p: {d["sha256"] for d in ds} for p, ds in by_part.items()}
    assert not (hashes["train"] & hashes["valid"] or hashes["train"] & hashes["test"]
                or hashes["valid"] & hashes["test"])
    for part, ds in by_part.items():
        assert len(parts[part]) == sum(d["bytes"] + 1 for d in ds)
        assert (parts[part] == text.BOUNDARY).sum() == len(ds)
    total = sum(d["bytes"] for d in docs)
    for part in ("valid", "test"):
        held = sum(d["bytes"] for d in by_part[part])
        assert text.HELD_OUT * total <= held < text.HELD_OUT * total + max(d["bytes"] for d in docs)


def test_assign_parts_hand_worked():
    # 10 docs of 10 bytes, 5% held out = 5 bytes: one doc reaches it, so test, valid, then train
    assert text.assign_parts([10] * 10) == ["test", "valid"] + ["train"] * 8
    # 5% of 100 = 5 bytes: test takes 1 + 1 + 3, valid 5, train the rest
    assert text.assign_parts([1, 1, 3, 5, 90]) == ["test", "test", "test", "valid", "train"]
    # a part keeps taking documents while it holds less than 5 bytes
    assert text.assign_parts([1, 1, 3, 2, 93]) == ["test", "test", "test", "valid", "valid"]


def test_windows_are_deterministic_and_come_from_their_part():
    parts = text.load_corpus()[1]
    x, y = make_dataset("lm", 64, 7, "train", seq_len=32)
    x2, y2 = make_dataset("lm", 64, 7, "train", seq_len=32)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, make_dataset("lm", 64, 8, "train", seq_len=32)[0])
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    train = np.asarray(parts["train"], dtype=np.int64)
    full, _ = make_dataset("lm", text.num_windows(32, "train"), 7, "train", seq_len=32)
    phase = next(p for p in range(32) if np.array_equal(train[p:p + 32], full[0]))
    tiles = train[phase:phase + full.size].reshape(full.shape)
    np.testing.assert_array_equal(full, tiles)  # every train byte once, in order, from one random phase
    assert {tuple(r) for r in x.tolist()} <= {tuple(r) for r in full.tolist()}


@pytest.mark.parametrize("part", ["valid", "test"])
def test_held_out_windows_tile_their_part(part):
    n, t = 20, 64
    x, y = make_dataset("lm", n, 0, "test", seq_len=t, eval_part=part)
    ref = np.asarray(text.load_corpus()[1][part], dtype=np.int64)
    np.testing.assert_array_equal(x.reshape(-1), ref[:n * t])
    np.testing.assert_array_equal(y.reshape(-1), ref[1:n * t + 1])
    np.testing.assert_array_equal(x, make_dataset("lm", n, 99, "test", seq_len=t, eval_part=part)[0])


def test_too_many_held_out_windows_is_a_clear_error():
    most = text.num_windows(256, "valid")
    assert make_dataset("lm", most, 0, "test")[0].shape == (most, 256)
    with pytest.raises(ValueError, match=f"num_examples = {most + 1}.*<= {most}"):
        make_dataset("lm", most + 1, 0, "test")
    with pytest.raises(ValueError, match="eval_part"):
        make_dataset("lm", 4, 0, "test", eval_part="train")


def test_a_changed_corpus_file_fails_naming_it(tmp_path, fresh_corpus):
    copy = tmp_path / "corpus"
    shutil.copytree(text.CORPUS_DIR, copy)
    archive = copy / text.ARCHIVE
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    fresh_corpus.setattr(text, "CORPUS_DIR", copy)
    fresh_corpus.setattr(text, "MANIFEST", copy / "corpus.json")
    with pytest.raises(ValueError, match=f"{text.ARCHIVE}.*does not match"):
        text.load_corpus()


def test_manifest_records_the_corpus(tmp_path):
    from statemix import generate

    manifest = generate.generate("lm", "test", tmp_path / "test", sets={"num_examples": "4", "seq_len": "16"})
    assert manifest["source"]["corpus_sha256"] == text.load_corpus()[0]["corpus_sha256"]
    assert manifest["vocab_size"] == 256 and manifest["num_scored"] == 4 * 16
    assert TASKS["lm"].backbone == "lm"


def test_tiny_lm_overfits_a_paragraph():
    """A 1-block BD-LRU LM memorises 192 bytes of the corpus: loss from ln 256 to below 0.3 nats in 300 steps."""
    from statemix.models import build_model

    torch.manual_seed(0)
    para = np.asarray(text.load_corpus()[1]["train"][1:194], dtype=np.int64)
    windows = torch.from_numpy(np.stack([para[i:i + 65] for i in range(0, 129, 16)]))
    x, y = windows[:, :-1], windows[:, 1:]
    model = build_model("bdlru-m2", 32, 256, 64, d_model=64, n_layers=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 5.0
    assert min(losses[-10:]) < 0.3, losses[::30]
