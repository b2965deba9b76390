"""statemix.config: defaults load, typed overrides apply, and bad keys/values fail naming the key."""
import pytest
import yaml

from statemix import config


def test_defaults_follow_mad_protocol():
    cfg = config.load()
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.min_lr) == (5e-4, 0.0, 1e-6)
    assert (cfg.train.batch_size, cfg.train.max_epochs, cfg.train.early_stop_acc) == (128, 200, 0.999)
    assert cfg.train.select == "best_test_ppl" and cfg.train.schedule == "cosine"
    assert cfg.model.d_model == 128


def test_overrides_are_typed_and_files_layer_in_order(tmp_path):
    f1, f2 = tmp_path / "a.yaml", tmp_path / "b.yaml"
    f1.write_text(yaml.safe_dump({"train": {"lr": 1e-3, "max_epochs": 7}}))
    f2.write_text(yaml.safe_dump({"train": {"lr": 2e-3}, "track": {"enabled": False}}))
    cfg = config.load([f1, f2], ["train.max_epochs=9", "train.compile=true", "train.min_lr=1e-7", "model.width=16"])
    assert cfg.train.lr == 2e-3 and cfg.train.max_epochs == 9 and cfg.train.compile is True
    assert cfg.train.min_lr == 1e-7 and isinstance(cfg.train.min_lr, float)
    assert cfg.model.width == 16 and cfg.track.enabled is False


def test_flatten_and_round_trip():
    cfg = config.load(overrides=["train.lr=0.01"])
    flat = config.flatten(cfg)
    assert flat["train.lr"] == 0.01 and flat["data.task"] == cfg.data.task
    assert len(flat) == sum(len(v) for v in config.to_dict(cfg).values())
    assert config.from_dict(yaml.safe_load(config.dump(cfg))) == cfg


@pytest.mark.parametrize("override, named", [
    ("train.lrr=1", "train.lrr"),
    ("trian.lr=1", "trian"),
    ("train.lr=fast", "train.lr"),
    ("train.lr=nan", "train.lr"),
    ("model.width=1.5", "model.width"),
    ("model.width=0", "model.width"),
    ("train.compile=maybe", "train.compile"),
    ("train.precision=fp16", "train.precision"),
    ("train.early_stop_acc=2", "train.early_stop_acc"),
    ("train.lr", "section.key=value"),
])
def test_bad_override_names_the_key(override, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        config.load(overrides=[override])


def test_bad_params_file_names_file_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({"train": {"batch": 64}}))
    with pytest.raises(ValueError, match=r"bad\.yaml.*train\.batch"):
        config.load([f])
    f.write_text(yaml.safe_dump({"train": {"batch_size": "big"}}))
    with pytest.raises(ValueError, match=r"train\.batch_size.*'big'"):
        config.load([f])


def test_base_missing_a_key_fails(tmp_path):
    tree = config.to_dict(config.load())
    del tree["train"]["lr"]
    base = tmp_path / "default.yaml"
    base.write_text(yaml.safe_dump(tree))
    with pytest.raises(ValueError, match="lr"):
        config.load(base=base)


def test_gate_norm_and_backend_choices_are_the_ops_own():
    """config keeps its own lists (it does not import torch); they must name what statemix.ops accepts."""
    from statemix.ops import BACKENDS, NORMS

    assert config.CHOICES["model.norm"] == NORMS
    assert config.CHOICES["model.backend"] == BACKENDS
