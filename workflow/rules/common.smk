"""Grid choice and validation, path patterns and input functions; everything else is in statemix.grids."""

PY = sys.executable
CONFIG_KEYS = {"grid", "study", "task", "track", "batch"}
_unknown = sorted(set(config) - CONFIG_KEYS)
if _unknown:
    raise ValueError(f"--config {_unknown[0]}: unknown key; allowed: {sorted(CONFIG_KEYS)}")

GRID = grids.load(grids.choose(config))
G = GRID.name
STUDIES = grids.config_list(config, "study")
TASKS = grids.config_list(config, "task")
SELECTED = GRID.select(STUDIES, TASKS)
TRACK = grids.config_flag(config, "track", default=True)
BATCH = grids.config_flag(config, "batch", default=False)
# Tracking is switched outside the rules' shell text and params, so toggling it reruns nothing.
TRACK_TRAIN = "" if TRACK else "--set track.enabled=false"
TRACK_AGGREGATE = "" if TRACK else "--no-track"
USE_GPU = grids.gpu_visible()
GRID_FILE = str(GRID.file.relative_to(workflow.basedir)) if GRID.file.is_relative_to(workflow.basedir) else str(GRID.file)

DATA = f"data/{G}/{{task}}/s{{seed}}"
RUN = f"results/{G}/{{task}}/{{arch}}/{{variant}}/w{{width}}/s{{seed}}"
REPORT = f"reports/{G}"
TABLE = f"{REPORT}/runs.parquet"

wildcard_constraints:
    task=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    arch=r"[a-z0-9][a-z0-9-]*",
    variant=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    width=r"\d+",
    seed=r"\d+",
    split="train|test",


def dataset_of(wc):
    return GRID.datasets[DATA.format(task=wc.task, seed=wc.seed)]


def run_of(wc):
    return GRID.runs[RUN.format(**wc)]


def run_metrics(runs):
    return [f"{r.path(G)}/metrics.json" for r in runs]


def final_targets():
    if STUDIES or TASKS:
        return run_metrics(SELECTED)
    return [f"{REPORT}/report.md"] + (benchmark_targets() if GRID.spec.get("benchmark") else [])


def html_report(_log):
    """Snakemake's self-contained HTML report, rebuilt after a full run whose report.md is newer."""
    md, html = Path(f"{REPORT}/report.md"), Path(f"{REPORT}/report.html")
    if not (STUDIES or TASKS) and md.exists() and (not html.exists() or html.stat().st_mtime < md.stat().st_mtime):
        shell(f"{PY} -m snakemake --nolock --quiet all --report {html} --config grid={GRID_FILE}")
