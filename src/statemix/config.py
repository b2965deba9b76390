"""Run configuration: params/default.yaml, then params files, then typed `--set section.key=value` overrides.

The dataclasses below fix every key's name and type; the values live only in params/default.yaml, so a key
missing there or unknown anywhere is an error that names it. `flatten()` gives the `section.key` view that
MLflow logs as params.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from statemix.checks import split_assignment
from statemix.paths import DEFAULT_PARAMS

DEFAULT_PATH = DEFAULT_PARAMS


@dataclass(frozen=True)
class DataConfig:
    task: str
    dir: str


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    width: int
    d_model: int
    n_layers: int
    backbone: str
    channel_mixer: str
    norm: str
    backend: str
    init: str
    positions: str


@dataclass(frozen=True)
class TrainConfig:
    seed: int
    lr: float
    weight_decay: float
    beta1: float
    beta2: float
    schedule: str
    min_lr: float
    batch_size: int
    eval_batch_size: int
    drop_last: bool
    max_epochs: int
    early_stop_acc: float
    patience: int
    accuracy: str
    select: str
    grad_clip: float
    precision: str
    device: str
    compile: bool
    cuda_graphs: str
    checkpoint_every: int


@dataclass(frozen=True)
class TrackConfig:
    enabled: bool
    experiment: str
    uri: str
    figure: bool


@dataclass(frozen=True)
class Config:
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    track: TrackConfig


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
_SECTION_TYPES = typing.get_type_hints(Config)

CHOICES = {
    "model.backbone": ("auto", "lm", "autoencoder"),
    "model.channel_mixer": ("swiglu", "mlp"),
    "model.norm": ("softmax", "sigmoid", "relu", "tanh", "linear", "none"),
    "model.backend": ("auto", "reference", "scan", "triton"),
    "model.init": ("fork", "mad"),
    "model.positions": ("learned", "sincos"),
    "train.schedule": ("cosine", "constant"),
    "train.accuracy": ("macro", "micro"),
    "train.select": ("best_test_ppl", "last"),
    "train.precision": ("auto", "bf16", "fp32"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.cuda_graphs": ("auto", "on", "off"),
}
NOT_IDENTITY = ("track.", "data.dir", "train.checkpoint_every", "train.compile")
"""Key prefixes that cannot change a run's numbers beyond bf16 tolerance: where it logs, where its data folder
lies, how often it saves, whether torch.compile fuses its step (tests/train/test_graphs_gpu.py checks compiled
runs against plain ones). They are left out of a run's identity (statemix.runs) and of the check that a
committed result still matches its grid (statemix.results); each run's config.yaml still records them."""
POSITIVE = ("model.width", "model.d_model", "model.n_layers", "train.lr", "train.batch_size",
            "train.eval_batch_size", "train.max_epochs", "train.checkpoint_every")
NON_NEGATIVE = ("train.weight_decay", "train.min_lr", "train.early_stop_acc", "train.patience", "train.grad_clip")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _coerce(key: str, value, from_text: bool, kind: type):
    """Return `value` as `kind`, or raise a ValueError naming `key`; text from --set is parsed by type."""
    bad = ValueError(f"{key}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")
    if kind is str:
        if isinstance(value, str):
            return value
        raise bad
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if isinstance(value, bool):
        raise bad
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str) and from_text:
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if kind is float:
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise bad from None
        else:
            raise bad
        if not math.isfinite(out):
            raise ValueError(f"{key}: must be finite, got {value!r}")
        return out
    raise TypeError(f"{key}: unsupported config type {kind}")


def _merge(tree: dict, update, origin: str, require_all: bool = False) -> None:
    """Merge a {section: {key: value}} mapping into `tree`, rejecting unknown sections and keys."""
    if not isinstance(update, dict):
        raise ValueError(f"{origin}: expected a mapping of sections {sorted(SECTIONS)}, got {type(update).__name__}")
    for section, body in update.items():
        if section not in SECTIONS:
            raise ValueError(f"{origin}: unknown section {section!r}; allowed: {sorted(SECTIONS)}")
        fields = typing.get_type_hints(_SECTION_TYPES[section])
        if not isinstance(body, dict):
            raise ValueError(f"{origin}: section {section!r} must be a mapping, got {body!r}")
        for key, value in body.items():
            if key not in fields:
                raise ValueError(f"{origin}: unknown key {section}.{key}; allowed in {section}: {sorted(fields)}")
            tree.setdefault(section, {})[key] = (value, False)
        if require_all:
            missing = sorted(set(fields) - set(body))
            if missing:
                raise ValueError(f"{origin}: section {section!r} lacks keys {missing}")


def parse_override(text: str) -> tuple[str, str, str]:
    """Split 'section.key=value' into its parts, or raise a ValueError saying what is allowed."""
    name, value = split_assignment(text) or ("", "")
    section, dot, key = name.strip().partition(".")
    if not dot or not key:
        raise ValueError(f"--set {text!r}: expected section.key=value with section in {sorted(SECTIONS)}")
    return section, key, value


def load(paths=(), overrides=(), base: str | Path = DEFAULT_PATH) -> Config:
    """Build the resolved Config from `base`, each params file in `paths`, then `overrides` (section.key=value)."""
    tree: dict = {}
    with open(base) as f:
        _merge(tree, yaml.safe_load(f), str(base), require_all=True)
    for path in paths:
        with open(path) as f:
            _merge(tree, yaml.safe_load(f) or {}, str(path))
    for text in overrides:
        section, key, value = parse_override(text)
        _merge(tree, {section: {key: value}}, f"--set {text!r}")
        tree[section][key] = (value, True)
    return _build(tree, str(base))


def from_dict(tree: dict, origin: str = "config") -> Config:
    """Rebuild a Config from a nested dict (e.g. a saved config.yaml), with the same checks as `load`."""
    merged: dict = {}
    _merge(merged, tree, origin, require_all=True)
    return _build(merged, origin)


def _build(tree: dict, origin: str) -> Config:
    missing = sorted(set(SECTIONS) - set(tree))
    if missing:
        raise ValueError(f"{origin}: lacks sections {missing}")
    sections = {}
    for section, cls in _SECTION_TYPES.items():
        kinds = typing.get_type_hints(cls)
        sections[section] = cls(**{key: _coerce(f"{section}.{key}", *tree[section][key], kind=kinds[key])
                                   for key in kinds})
    config = Config(**sections)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Check allowed values and ranges; each error names the key, the value and what is allowed."""
    flat = flatten(config)
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ValueError(f"{key}: got {flat[key]!r}; allowed: {list(allowed)}")
    for key in POSITIVE:
        if not flat[key] > 0:
            raise ValueError(f"{key}: got {flat[key]!r}; must be > 0")
    for key in NON_NEGATIVE:
        if not flat[key] >= 0:
            raise ValueError(f"{key}: got {flat[key]!r}; must be >= 0")
    if flat["train.early_stop_acc"] > 1:
        raise ValueError(f"train.early_stop_acc: got {flat['train.early_stop_acc']!r}; must be in [0, 1]")
    for key in ("train.beta1", "train.beta2"):
        if not 0 <= flat[key] < 1:
            raise ValueError(f"{key}: got {flat[key]!r}; must be in [0, 1)")


@functools.cache
def _defaults() -> dict:
    with open(DEFAULT_PATH) as f:
        return yaml.safe_load(f)


def default_value(key: str):
    """The value of `section.key` in params/default.yaml (read once per process)."""
    section, name = key.split(".")
    return _defaults()[section][name]


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def flatten(config: Config) -> dict:
    """{'section.key': value} for every key, in declaration order."""
    return {f"{section}.{key}": value
            for section, body in dataclasses.asdict(config).items() for key, value in body.items()}


def dump(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def identity(flat: dict) -> dict:
    """A flattened config's keys that make a run what it is: all but NOT_IDENTITY's."""
    return {k: v for k, v in flat.items() if not k.startswith(NOT_IDENTITY)}
