"""Finished runs that persist across machines: which runs of a grid are done, whether they still match the
grid, and pack / unpack of their small files to move them off a GPU machine.

A grid with `results: committed` (params/grids/paper.yaml) keeps three files of every finished run in git:
config.yaml, history.csv and metrics.json (.gitignore lets exactly these through; checkpoints stay out).
In the Snakefile a finished run's train job has no inputs, so on a fresh clone or a fresh GPU machine
neither regenerated datasets nor the arbitrary mtimes of a checkout rerun it; only aggregate and report
run. A run counts as finished when its metrics.json exists (training writes it last). A finished run whose
config.yaml no longer matches what the grid asks for is stale and stops the workflow at parse time, naming
the run and the key, because training would skip it ("complete already") and the report would mix
protocols. `python -m statemix.results check GRID [--remove-stale]` lists (and removes) them.

    python -m statemix.results pack results/paper --out $OUT/results.tar.gz   # on the GPU machine
    python -m statemix.results unpack results.tar.gz                          # here; then git add results/paper
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path, PurePosixPath

import yaml

from statemix import config as config_mod
from statemix import grids
from statemix.io import atomic_write_bytes

FILES = ("config.yaml", "history.csv", "metrics.json")


def committed(grid: grids.Grid) -> bool:
    """True for a grid whose finished runs are kept in git and never retrained (`results: committed`)."""
    return grid.spec.get("results", "local") == "committed"


def finished(grid: grids.Grid, root: Path | str = ".") -> dict:
    """The grid's runs whose metrics.json exists under `root`, keyed by result folder."""
    root = Path(root)
    return {key: run for key, run in grid.runs.items() if (root / key / "metrics.json").is_file()}


@functools.lru_cache(maxsize=None)
def _grid_config(overrides: tuple) -> dict:
    return config_mod.identity(config_mod.flatten(config_mod.load(overrides=list(overrides))))


def expected_config(run: grids.Run) -> dict:
    """The flattened training config the grid gives this run now: its --set overrides, then its identity
    (the train CLI's flags); loaded once per distinct set of overrides, since loading takes tens of ms."""
    return {**_grid_config(run.overrides), "data.task": run.task_name, "model.arch": run.arch,
            "model.width": run.width, "train.seed": run.seed}


def _recorded(path: Path) -> dict:
    """A run's config.yaml (written by config.dump) as {'section.key': value}."""
    tree = yaml.safe_load(path.read_text()) or {}
    return config_mod.identity({f"{s}.{k}": v for s, body in tree.items() for k, v in (body or {}).items()})


def stale(runs: dict, root: Path | str = ".") -> dict:
    """{folder: 'key: recorded -> expected; ...'} for finished runs whose config.yaml differs from the grid."""
    out = {}
    for key, run in sorted(runs.items()):
        path = Path(root) / key / "config.yaml"
        if not path.is_file():
            out[key] = "config.yaml is missing"
            continue
        recorded = _recorded(path)
        want = expected_config(run)
        diffs = [f"{k}: {recorded.get(k)!r} -> {want.get(k)!r}" for k in sorted(set(recorded) | set(want))
                 if recorded.get(k) != want.get(k)]
        if diffs:
            out[key] = "; ".join(diffs)
    return out


def check_current(grid: grids.Grid, runs: dict, root: Path | str = ".") -> None:
    """Raise ValueError naming every finished run that the grid no longer describes."""
    bad = stale(runs, root)
    if bad:
        lines = [f"{k}: {why}" for k, why in bad.items()]
        raise ValueError(f"grid {grid.name!r}: {len(bad)} finished run(s) no longer match the grid (recorded -> "
                         f"grid); retrain them with `python -m statemix.results check {grid.name} --remove-stale`:"
                         "\n  " + "\n  ".join(lines[:20]) + ("\n  ..." if len(lines) > 20 else ""))


def _run_folders(results_dir: Path) -> list:
    return sorted(p.parent for p in results_dir.rglob("metrics.json"))


def pack(results_dir: Path | str, out: Path | str, root: Path | str = ".") -> int:
    """Write a .tar.gz of FILES of every finished run under `results_dir` (paths relative to `root`); atomic."""
    root, results_dir = Path(root).resolve(), Path(results_dir).resolve()
    if not results_dir.is_dir():
        raise ValueError(f"RESULTS_DIR: {str(results_dir)!r} is not a folder")
    if not results_dir.is_relative_to(root):
        raise ValueError(f"RESULTS_DIR: {str(results_dir)!r} is not under the project root {str(root)!r}")
    buf = io.BytesIO()
    folders = _run_folders(results_dir)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for folder in folders:
            for name in FILES:
                if (folder / name).is_file():
                    tar.add(folder / name, arcname=str((folder / name).relative_to(root)), recursive=False)
    atomic_write_bytes(out, buf.getvalue())
    return len(folders)


def _members(tar: tarfile.TarFile) -> dict:
    """{run folder: {file name: bytes}} of an archive, refusing anything but FILES under results/."""
    runs: dict = {}
    for m in tar.getmembers():
        path = PurePosixPath(m.name)
        if (not m.isfile() or path.is_absolute() or ".." in path.parts or path.parts[0] != "results"
                or path.name not in FILES or len(path.parts) < 3):
            raise ValueError(f"archive member {m.name!r}: only results/<grid>/.../{{{','.join(FILES)}}} files "
                             "are allowed")
        runs.setdefault(str(path.parent), {})[path.name] = tar.extractfile(m).read()
    return runs


def unpack(archive: Path | str, root: Path | str = ".", replace: bool = False) -> dict:
    """Write each finished run of `archive` under `root`, metrics.json last, so an interrupted unpack leaves no
    half run that looks finished. A run already here with a different metrics.json is a conflict: an error,
    unless `replace`. Returns counts {'added', 'same', 'replaced'}."""
    root = Path(root)
    with tarfile.open(archive, mode="r:*") as tar:
        runs = _members(tar)
    incomplete = sorted(k for k, files in runs.items() if "metrics.json" not in files)
    if incomplete:
        raise ValueError(f"{archive}: run folder(s) without metrics.json: {', '.join(incomplete[:5])}")
    counts = {"added": 0, "same": 0, "replaced": 0}
    conflicts = []
    plan = []
    for key, files in sorted(runs.items()):
        here = root / key / "metrics.json"
        if not here.is_file():
            plan.append((key, files, "added"))
        elif here.read_bytes() == files["metrics.json"]:
            counts["same"] += 1
        elif replace:
            plan.append((key, files, "replaced"))
        else:
            conflicts.append(key)
    if conflicts:
        raise ValueError(f"{archive}: {len(conflicts)} run(s) here already finished with a different metrics.json "
                         f"(e.g. {conflicts[0]}); pass --replace to overwrite them")
    for key, files, what in plan:
        (root / key / "metrics.json").unlink(missing_ok=True)
        for name in FILES:
            if name in files:
                atomic_write_bytes(root / key / name, files[name])
        counts[what] += 1
    return counts


def _check(args) -> int:
    grid = grids.load(args.grid)
    done = finished(grid, args.root)
    bad = stale(done, args.root)
    statuses: dict = {}
    for key in done:
        status = json.loads((Path(args.root) / key / "metrics.json").read_text()).get("status", "?")
        statuses[status] = statuses.get(status, 0) + 1
    print(f"grid {grid.name}: {len(grid.runs)} runs, {len(done)} finished "
          f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items())) or 'none'}), {len(bad)} stale, "
          f"{len(grid.runs) - len(done)} to run")
    for key, why in bad.items():
        print(f"stale {key}: {why}")
        if args.remove_stale:
            shutil.rmtree(Path(args.root) / key)
    return 1 if bad and not args.remove_stale else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m statemix.results", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="tar.gz the small files of every finished run under RESULTS_DIR")
    pk.add_argument("results_dir")
    pk.add_argument("--out", required=True)
    up = sub.add_parser("unpack", help="write the runs of an archive made by `pack` into the project")
    up.add_argument("archive")
    up.add_argument("--replace", action="store_true", help="overwrite runs finished here with other results")
    ck = sub.add_parser("check", help="count finished / stale / missing runs of a grid")
    ck.add_argument("grid")
    ck.add_argument("--remove-stale", action="store_true", help="delete stale run folders so they retrain")
    for s in (pk, up, ck):
        s.add_argument("--root", default=".", help="project root (default: the current folder)")
    args = p.parse_args(argv)
    try:
        if args.command == "pack":
            n = pack(args.results_dir, args.out, args.root)
            print(f"packed {n} finished run(s) -> {args.out} ({Path(args.out).stat().st_size:,} bytes)")
        elif args.command == "unpack":
            counts = unpack(args.archive, args.root, args.replace)
            print(f"unpacked {args.archive}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        else:
            return _check(args)
    except (ValueError, OSError, tarfile.TarError) as err:
        print(f"statemix.results: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
