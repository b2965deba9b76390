"""Where things live: the project root, the params files, and the path patterns of datasets, runs and reports.

Patterns are relative to the project root and formatted with `grid`, `task` (a task instance's name), `seed`
and, for runs, `arch`, `variant` and `width`. The Snakefile, statemix.grids and the stage modules read them here.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS = ROOT / "params" / "default.yaml"
GRID_DIR = ROOT / "params" / "grids"

DATA = "data/{grid}/{task}/s{seed}"
RUN = "results/{grid}/{task}/{arch}/{variant}/w{width}/s{seed}"
REPORT = "reports/{grid}"


def project_root() -> Path:
    """The source checkout holding this package, or the working directory for an installed package."""
    return ROOT if (ROOT / "pyproject.toml").exists() else Path.cwd()


def for_grid(pattern: str, grid: str) -> str:
    """`pattern` with `{grid}` filled in and its other fields left as wildcards (Snakemake's patterns)."""
    return pattern.replace("{grid}", grid)
