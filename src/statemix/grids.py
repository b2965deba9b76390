"""Experiment grids: load and check params/grids/<name>.yaml, and expand it into datasets and runs.

A grid names task instances (a task plus its generator params), variants (named training-config
overrides, e.g. one per gate normalisation) and studies (tasks x archs x widths x variants). Every
study is crossed with the grid's seeds. The Snakefile calls only this module to decide what to run,
so the pipeline's shape is plain Python that tests can check.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from statemix.checks import is_positive_int
from statemix.paths import DATA, DEFAULT_PARAMS, GRID_DIR, ROOT, RUN

SCHEMA = GRID_DIR / "schema.yaml"
GRID_NAMES = ("paper", "cpu", "smoke")
BASE_VARIANT = "base"

# The code that determines a training's numbers: its sha256 is part of the run fingerprint (statemix.runs), so
# editing any of these files retrains instead of resuming or keeping an old result. Add new modules that change
# what a training computes here.
FINGERPRINT_CODE = [
    "src/statemix/train.py", "src/statemix/trainer.py", "src/statemix/runs.py", "src/statemix/config.py",
    "src/statemix/metrics.py", "src/statemix/graphs.py", "src/statemix/stack.py", "src/statemix/models/*.py",
    "src/statemix/mixers/*.py", "src/statemix/ops/*.py", "src/statemix/ops/triton/*.py",
]

STAGE_CODE = {
    "generate": ["src/statemix/generate.py", "src/statemix/io.py", "src/statemix/checks.py",
                 "src/statemix/tasks/*.py", "src/statemix/tasks/corpus/*"],
    "train": [*FINGERPRINT_CODE, "src/statemix/worker.py", "src/statemix/provenance.py",
              "src/statemix/progress.py", "src/statemix/track.py", "src/statemix/io.py", "src/statemix/paths.py",
              "src/statemix/checks.py", "src/statemix/generate.py", "params/default.yaml"],
    "aggregate": ["src/statemix/aggregate.py", "src/statemix/grids.py", "src/statemix/paths.py",
                  "src/statemix/checks.py"],
    "report": ["src/statemix/report.py", "src/statemix/report_lm.py", "src/statemix/plots.py",
               "src/statemix/claims.py", "src/statemix/coverage.py"],
    "benchmark": ["benchmarks/bench_scan.py", "benchmarks/bench_layer.py", "benchmarks/timing.py", "src/statemix/ops/*.py", "src/statemix/ops/triton/*.py",
                  "src/statemix/mixers/*.py"],
}


@dataclass(frozen=True)
class Dataset:
    """One generated dataset: a task instance at one seed (both splits live under `path`)."""

    name: str
    task: str
    seed: int
    params: dict = field(hash=False, compare=False)
    split_params: dict = field(hash=False, compare=False)

    def path(self, grid: str) -> str:
        return DATA.format(grid=grid, task=self.name, seed=self.seed)

    def train_shape(self) -> tuple[int, int]:
        """(train examples, longest train sequence) from the generator params and the task's defaults."""
        from statemix.tasks import TASKS, resolve_params

        params = dict(self.split_params["train"])
        n = int(params.pop("num_examples", TASKS[self.task].num_examples["train"]))
        gen = resolve_params(self.task, **params)
        return n, int(gen.get("seq_len", gen.get("max_len", 0)))


@dataclass(frozen=True)
class Run:
    """One training: task instance x arch x variant x width x seed, with its config overrides."""

    task: str
    arch: str
    variant: str
    width: int
    seed: int
    task_name: str = field(compare=False)
    overrides: tuple = field(compare=False, default=())
    studies: tuple = field(compare=False, default=())

    def path(self, grid: str) -> str:
        return RUN.format(grid=grid, task=self.task, arch=self.arch, variant=self.variant, width=self.width,
                          seed=self.seed)

    def dataset_path(self, grid: str) -> str:
        """The path of the dataset this run trains on (the key of `Grid.datasets`)."""
        return DATA.format(grid=grid, task=self.task, seed=self.seed)


@dataclass
class Grid:
    """A loaded, checked grid: its raw spec, datasets and runs (deduplicated across studies)."""

    name: str
    file: Path
    spec: dict
    datasets: dict
    runs: dict
    full_runs: dict = field(default_factory=dict)
    full_datasets: dict = field(default_factory=dict)

    def select(self, studies=None, tasks=None) -> list:
        """Runs belonging to any of `studies` and any of `tasks` (None = all), for chunked runs."""
        for key, allowed in (("study", studies), ("task", tasks)):
            known = set(self.spec["studies"]) if key == "study" else set(self.spec["tasks"])
            bad = sorted(set(allowed or ()) - known)
            if bad:
                raise ValueError(f"config {key}={','.join(bad)} is not in grid {self.name!r}; "
                                 f"allowed: {sorted(known)}")
        return [r for r in self.runs.values()
                if (not studies or set(r.studies) & set(studies)) and (not tasks or r.task in tasks)]

    def params_hash(self) -> str:
        """sha256 over the grid file and params/default.yaml: the provenance of every config value."""
        h = hashlib.sha256()
        for f in (self.file, DEFAULT_PARAMS):
            h.update(f.read_bytes() if f.exists() else b"")
        return h.hexdigest()


def grid_file(grid: str) -> Path:
    """A grid name (paper|cpu|smoke|<name in params/grids>) or a path to a grid YAML file."""
    if grid.endswith((".yaml", ".yml")):
        return Path(grid).resolve()
    path = GRID_DIR / f"{grid}.yaml"
    if grid == "schema" or not path.exists():
        names = sorted(p.stem for p in GRID_DIR.glob("*.yaml") if p.stem != "schema")
        raise ValueError(f"config grid={grid!r} is not a grid; allowed: {names} or a path to a .yaml file")
    return path


def resource_value(res) -> int:
    """A global resource as an int: Snakemake 9 hands the profile's `resources:` to rules as `Resource` objects."""
    return int(getattr(res, "value", res) or 0)


def gpu_visible() -> bool:
    """True when torch sees a CUDA device; STATEMIX_GPU=1 or 0 overrides (e.g. to dry-run the GPU plan on a CPU)."""
    forced = os.environ.get("STATEMIX_GPU")
    if forced is not None:
        if forced not in ("0", "1"):
            raise ValueError(f"STATEMIX_GPU: got {forced!r}; allowed: 0, 1 (or unset)")
        return forced == "1"
    import torch

    return torch.cuda.is_available()


def choose(config: dict, out=sys.stderr) -> str:
    """The grid to run: config['grid'] if given, else 'paper' with a GPU and 'cpu' without; says so."""
    if config.get("grid"):
        grid, why = str(config["grid"]), "chosen with --config grid"
    else:
        gpu = gpu_visible()
        grid, why = ("paper", "a GPU is visible") if gpu else ("cpu", "no GPU is visible")
    print(f"statemix: running grid '{grid}' ({why}); choose another with --config grid=paper|cpu|smoke",
          file=out)
    return grid


def _validate_schema(spec: dict, file: Path) -> None:
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(spec), key=lambda e: list(e.path))
    if errors:
        lines = [f"{'.'.join(map(str, e.path)) or '<top>'}: {e.message}" for e in errors]
        raise ValueError(f"{file}: invalid grid file:\n  " + "\n  ".join(lines))


def _check_names(spec: dict, file: Path) -> None:
    from statemix.models import registry
    from statemix.tasks import TASKS

    for name, inst in spec["tasks"].items():
        if inst["task"] not in TASKS:
            raise ValueError(f"{file}: tasks.{name}.task={inst['task']!r} is not a task; allowed: {sorted(TASKS)}")
    known_variants = set(spec.get("variants", {})) | {BASE_VARIANT}
    for sname, study in spec["studies"].items():
        for key, allowed in (("tasks", set(spec["tasks"])), ("archs", set(registry)),
                             ("variants", known_variants)):
            for value in study.get(key, ()):
                if value not in allowed:
                    raise ValueError(f"{file}: studies.{sname}.{key} has {value!r}; allowed: {sorted(allowed)}")
        for arch in study.get("widths_by_arch", {}):
            if arch not in study["archs"]:
                raise ValueError(f"{file}: studies.{sname}.widths_by_arch.{arch}: {arch!r} is not one of "
                                 f"the study's archs {study['archs']}")


def _check_task_params(datasets: dict, file: Path) -> None:
    from statemix.tasks import resolve_params

    for key, ds in datasets.items():
        for split, params in ds.split_params.items():
            params = dict(params)
            n = params.pop("num_examples", 1)
            try:
                if not is_positive_int(n):
                    raise ValueError(f"num_examples must be a positive int, got {n!r}")
                resolve_params(ds.task, **params)
            except ValueError as err:
                raise ValueError(f"{file}: tasks.{ds.name} ({split} split): {err}") from None


def _check_widths(spec: dict, runs: dict, file: Path) -> None:
    from statemix.models import registry

    d_model = spec.get("set", {}).get("model", {}).get("d_model", 128)
    for run in {(r.arch, r.width) for r in runs.values()}:
        try:
            registry[run[0]].check_size(d_model=d_model, width=run[1])
        except ValueError as err:
            raise ValueError(f"{file}: width {run[1]} is not valid for arch {run[0]!r}: {err}") from None


def _check_overrides(runs: dict, file: Path) -> None:
    from statemix import config

    for overrides in {r.overrides for r in runs.values()}:
        try:
            config.load(overrides=overrides)
        except ValueError as err:
            raise ValueError(f"{file}: a training override is invalid: {err}") from None


def merge(*layers: dict) -> dict:
    """Merge {section: {key: value}} override layers; later layers win key by key."""
    out: dict = {}
    for layer in layers:
        for section, values in (layer or {}).items():
            out.setdefault(section, {}).update(values)
    return out


def to_sets(overrides: dict) -> tuple:
    """{section: {key: value}} -> ('section.key=value', ...), values in YAML/JSON spelling."""
    return tuple(f"{s}.{k}={json.dumps(v) if not isinstance(v, str) else v}"
                 for s, values in sorted(overrides.items()) for k, v in sorted(values.items()))


def _split_params(spec: dict, inst: dict) -> dict:
    """Generator params per split: task params < grid-wide split data < task's split data."""
    return {split: {**inst.get("params", {}), **spec.get("data", {}).get(split, {}),
                    **inst.get("data", {}).get(split, {})} for split in ("train", "test")}


def _add_run(runs: dict, key: str, run: Run, study: str) -> None:
    prev = runs.get(key)
    if prev is None:
        runs[key] = replace(run, studies=(study,))
    elif prev.overrides != run.overrides:
        raise ValueError(f"run {key} appears in studies {prev.studies} and {study!r} with different overrides")
    elif study not in prev.studies:
        runs[key] = replace(prev, studies=prev.studies + (study,))


def expand(spec: dict, name: str) -> tuple[dict, dict]:
    """All datasets and runs of a checked grid spec, each keyed by its output folder."""
    datasets, runs = {}, {}
    variants = {BASE_VARIANT: {}, **spec.get("variants", {})}
    for sname, study in spec["studies"].items():
        for task, seed in itertools.product(study["tasks"], spec["seeds"]):
            inst = spec["tasks"][task]
            ds = Dataset(task, inst["task"], int(seed), inst.get("params", {}), _split_params(spec, inst))
            datasets[ds.path(name)] = ds
            for arch, variant in itertools.product(study["archs"], study.get("variants", [BASE_VARIANT])):
                over = to_sets(merge(spec.get("set"), inst.get("set"), variants[variant]))
                for width in study.get("widths_by_arch", {}).get(arch, study["widths"]):
                    run = Run(task, arch, variant, int(width), int(seed), inst["task"], over)
                    _add_run(runs, run.path(name), run, sname)
    return datasets, runs


CUT_KEYS = {"studies": "studies", "tasks": "task", "archs": "arch", "widths": "width", "seeds": "seed",
            "variants": "variant"}


def cut_matches(cut: dict, run: Run) -> bool:
    """True when `run` has every attribute the cut names (a study cut matches a run of any listed study)."""
    for key, attr in CUT_KEYS.items():
        if key not in cut:
            continue
        value = getattr(run, attr)
        if not (set(value) & set(cut[key]) if key == "studies" else value in cut[key]):
            return False
    return True


def apply_cuts(spec: dict, runs: dict) -> dict:
    """The runs left after the grid's `budget.cuts`, applied in order."""
    left = dict(runs)
    for cut in spec.get("budget", {}).get("cuts", []):
        left = {k: r for k, r in left.items() if not cut_matches(cut, r)}
    return left


def load(grid: str, check_names: bool = True) -> Grid:
    """Load, validate (schema, then task/arch/variant names and widths) and expand one grid."""
    file = grid_file(grid)
    spec = yaml.safe_load(file.read_text())
    if not isinstance(spec, dict):
        raise ValueError(f"{file}: a grid file must be a mapping, got {type(spec).__name__}")
    _validate_schema(spec, file)
    if check_names:
        _check_names(spec, file)
    datasets, runs = expand(spec, spec["name"])
    if check_names:
        _check_task_params(datasets, file)
        _check_overrides(runs, file)
        _check_widths(spec, runs, file)
    _check_name(spec["name"], file)
    kept = apply_cuts(spec, runs)
    used = {r.dataset_path(spec["name"]) for r in kept.values()}
    return Grid(spec["name"], file, spec, {k: d for k, d in datasets.items() if k in used}, kept, runs, datasets)


def _check_name(name: str, file: Path) -> None:
    """A grid's name picks its data/, results/ and reports/ folders, so it must be the file's own name, and a
    file outside params/grids/ may not take the name of a grid there (it would mix its runs into that grid's)."""
    if name != file.stem:
        raise ValueError(f"{file}: name={name!r} must match the file name {file.stem!r} (the name picks "
                         f"results/<name>/); rename the file or set name: {file.stem}")
    committed = GRID_DIR / f"{name}.yaml"
    if file.parent.resolve() != GRID_DIR.resolve() and committed.exists():
        raise ValueError(f"{file}: name={name!r} is the name of {committed.relative_to(ROOT)}, whose "
                         f"results/{name}/ it would write into; give your grid a name of its own")


def config_list(config: dict, key: str) -> list:
    """A comma-separated --config value (e.g. study=main,order) as a list; [] when absent."""
    value = config.get(key)
    return [v for v in str(value).split(",") if v] if value not in (None, "") else []


def config_flag(config: dict, key: str, default: bool) -> bool:
    """A boolean --config value (true/false); anything else is an error naming the key."""
    value = config.get(key, default)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ValueError(f"--config {key}={value!r}: expected true or false")


BATCH_MODES = ("false", "true", "task", "arch")
"""--config batch: off; one worker per task instance x variant (true = task); or one per task x variant x arch."""


def batch_mode(config: dict) -> str | None:
    """--config batch as the `train_batches` grouping ('task' or 'arch'), None when off."""
    value = config.get("batch", False)
    value = config_choice({"batch": str(value).lower() if isinstance(value, bool) else value}, "batch",
                          BATCH_MODES, "false")
    return {"false": None, "true": "task"}.get(value, value)


def train_batches(runs, by: str = "task") -> dict:
    """Runs a batch worker trains together: one batch per task instance x variant (`by="task"`: every
    architecture, width and seed of it, in one process so that its groups' CUDA streams overlap), or per task x
    variant x architecture (`by="arch"`: smaller batches, which start faster (each process captures its own graphs)
    and finish sooner, while the GPU time-slices the processes). Seeds stack when their datasets share a shape.
    Keys are `task/variant` (or `task/variant/arch`); runs sorted by arch, width, seed."""
    if by not in ("task", "arch"):
        raise ValueError(f"train_batches: by={by!r}; allowed: task, arch")
    batches: dict = {}
    for run in runs:
        key = f"{run.task}/{run.variant}" + (f"/{run.arch}" if by == "arch" else "")
        batches.setdefault((key, tuple(run.overrides)), []).append(run)
    keys = [key for key, _ in batches]
    return {(key if keys.count(key) == 1 else f"{key}/{i}"): sorted(members, key=lambda r: (r.arch, r.width, r.seed))
            for i, ((key, _), members) in enumerate(sorted(batches.items(), key=lambda kv: kv[0][0]))}


def config_choice(config: dict, key: str, allowed: tuple, default: str) -> str:
    """A --config value that must be one of `allowed`; anything else is an error naming the key."""
    value = str(config.get(key, default))
    if value not in allowed:
        raise ValueError(f"--config {key}={value!r}: allowed: {', '.join(allowed)}")
    return value


def cli_sets(overrides) -> str:
    """Overrides ('k=v', ...) or {k: v} as shell-quoted `--set k=v` arguments for the stage CLIs."""
    items = overrides.items() if isinstance(overrides, dict) else (o.split("=", 1) for o in overrides)
    return " ".join(f"--set {shlex.quote(f'{k}={v}')}" for k, v in items)


def code_files(stage: str, root: Path = ROOT) -> list:
    """The source files a stage runs, as Snakemake inputs, so that editing them reruns that stage."""
    return matching(STAGE_CODE[stage], root)


def matching(patterns, root: Path = ROOT) -> list:
    """Files under `root` matching any of the glob `patterns`, as sorted relative paths."""
    return sorted({str(p.relative_to(root)) for pattern in patterns for p in root.glob(pattern)})



def main(argv=None) -> int:
    """`python -m statemix.grids [check] GRID`: validate, print job counts, protocol, sizes and cuts;
    `python -m statemix.grids estimate GRID [budget options]`: the GPU-hours (`python -m statemix.budget`)."""
    import argparse

    from statemix import budget

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("check", "estimate", "-h", "--help"):
        argv.insert(0, "check")
    p = argparse.ArgumentParser(prog="python -m statemix.grids", description="Check a grid or estimate its time.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate a grid; print job counts, protocol, sizes and cuts").add_argument(
        "grid", help="paper | cpu | smoke | path to a grid YAML")
    est = sub.add_parser("estimate", help="GPU-hours per study from measured rates (python -m statemix.budget)")
    est.add_argument("grid", help="paper | cpu | smoke | path to a grid YAML")
    est.add_argument("budget_args", nargs=argparse.REMAINDER, help="options of python -m statemix.budget")
    args = p.parse_args(argv)
    if args.command == "estimate":
        return budget.main([args.grid, *args.budget_args])
    try:
        grid = load(args.grid)
    except ValueError as err:
        print(f"statemix.grids: error: {err}", file=sys.stderr)
        return 2
    cut = len(grid.full_runs) - len(grid.runs)
    print(f"grid {grid.name}: {len(grid.datasets)} datasets ({2 * len(grid.datasets)} generate jobs), "
          f"{len(grid.runs)} runs" + (f" ({cut} of {len(grid.full_runs)} cut by budget.cuts)" if cut else ""))
    print(describe(grid))
    return 0


def describe(grid: Grid) -> str:
    """Protocol, sizes per study (runs left after the cuts) and the cuts, as text for `python -m statemix.grids`."""
    from statemix import config

    runs = list(grid.runs.values()) or list(grid.full_runs.values())
    t = config.load(overrides=runs[0].overrides).train
    lines = [f"protocol: AdamW lr {t.lr:g}, batch {t.batch_size}, up to {t.max_epochs} epochs, {t.schedule} over "
             f"{t.max_epochs} epochs to {t.min_lr:g}, early stop at test {t.accuracy} accuracy {t.early_stop_acc:g}, "
             f"reported epoch {t.select}; seeds {grid.spec['seeds']}", "sizes (width = state per layer), per study:"]
    for name, study in grid.spec["studies"].items():
        mine = [r for r in grid.runs.values() if name in r.studies]
        widths = {}
        for r in mine:
            widths.setdefault(r.arch, set()).add(r.width)
        sizes = ", ".join(f"{a} {sorted(w)}" for a, w in widths.items()) or "all cut"
        lines.append(f"  {name}: {len(mine)} runs on {', '.join(study['tasks'])}: {sizes}")
    cuts = grid.spec.get("budget", {}).get("cuts", [])
    if cuts:
        lines.append(f"budget: {grid.spec['budget'].get('gpu_hours')} GPU-hours at "
                     f"{grid.spec['budget'].get('concurrency')} trainings at once; cuts in order "
                     f"(`python -m statemix.budget {grid.name}` gives the hours after each):")
        lines += [f"  {i}. {c['why']}" for i, c in enumerate(cuts, 1)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
