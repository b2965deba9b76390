"""Grid choice and validation, path patterns and input functions; everything else is in statemix.grids."""

PY = sys.executable
CONFIG_KEYS = {"grid", "study", "task", "track", "gpus", "runs", "batch"}
_unknown = sorted(set(config) - CONFIG_KEYS)
if _unknown:
    raise ValueError(f"--config {_unknown[0]}: unknown key; allowed: {sorted(CONFIG_KEYS)}")

GRID = grids.load(grids.choose(config))
G = GRID.name
STUDIES = grids.config_list(config, "study")
TASKS = grids.config_list(config, "task")
SELECTED = GRID.select(STUDIES, TASKS)
TRACK = grids.config_flag(config, "track", default=True)
BATCH = grids.batch_mode(config)
# Tracking is switched outside the rules' shell text and params, so toggling it reruns nothing.
TRACK_TRAIN = "" if TRACK else "--set track.enabled=false"
TRACK_AGGREGATE = "" if TRACK else "--no-track"
USE_GPU = grids.gpu_visible()
# A cluster executor (--executor slurm sets nodes; its jobs run in remote mode) hands out GPUs itself.
CLUSTER = workflow.remote_exec or workflow.global_resources["_nodes"].value is not None
GPUS = gpus.plan(config, USE_GPU, grids.resource_value(workflow.global_resources.get(gpus.POOL_KEY)), CLUSTER)
for _pool, _mb in GPUS.pools().items():
    workflow.register_resource(_pool, _mb)
GPU_OF = gpus.assign({r.path(G): gpus.run_steps(GRID, r) for r in SELECTED}, GPUS.gpus)
GRID_FILE = str(GRID.file.relative_to(workflow.basedir)) if GRID.file.is_relative_to(workflow.basedir) else str(GRID.file)
FINISHED = results.finished(GRID)
if results.committed(GRID):
    results.check_current(GRID, FINISHED)
# Committed finished runs are final (statemix.results); without a GPU their report never trains the rest.
ONLY_FINISHED = grids.config_choice(config, "runs", ("all", "finished"),
                                    "finished" if results.committed(GRID) and not USE_GPU else "all") == "finished"
REPORT_RUNS = [GRID.runs[k] for k in sorted(FINISHED)] if ONLY_FINISHED else list(GRID.runs.values())
if ONLY_FINISHED:
    print(f"statemix: report from the {len(FINISHED)} finished of {len(GRID.runs)} runs (no training); "
          "train the rest with --config runs=all", file=sys.stderr)

DATA = paths.for_grid(paths.DATA, G)
RUN = paths.for_grid(paths.RUN, G)
REPORT = paths.for_grid(paths.REPORT, G)
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


def train_inputs(wc):
    """A committed finished run has no inputs, so missing datasets or checkout mtimes never rerun it."""
    if results.committed(GRID) and RUN.format(**wc) in FINISHED:
        return {}
    return {"train": f"{DATA.format(**wc)}/train/manifest.json", "test": f"{DATA.format(**wc)}/test/manifest.json",
            "code": grids.code_files("train")}


def run_metrics(runs):
    return [f"{r.path(G)}/metrics.json" for r in runs]


def final_targets():
    if STUDIES or TASKS:
        return run_metrics(SELECTED)
    mlflow = [f"logs/{G}/mlflow_import.txt"] if TRACK and results.committed(GRID) else []
    return [f"{REPORT}/report.md"] + mlflow + (benchmark_targets() if GRID.spec.get("benchmark") else [])


def html_report(_log):
    """Snakemake's self-contained HTML report, rebuilt after a full run whose report.md is newer."""
    md, html = Path(f"{REPORT}/report.md"), Path(f"{REPORT}/report.html")
    if not (STUDIES or TASKS) and md.exists() and (not html.exists() or html.stat().st_mtime < md.stat().st_mtime):
        shell(f"{PY} -m snakemake --nolock --quiet all --report {html} --config grid={GRID_FILE}")
