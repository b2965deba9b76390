rule aggregate:
    """Join every run's metrics.json, config and dataset manifest into one table (CSV and Parquet)."""
    input:
        runs=run_metrics(REPORT_RUNS),
        grid=GRID_FILE,
        code=grids.code_files("aggregate"),
    output:
        parquet=TABLE,
        csv=f"{REPORT}/runs.csv",
        metrics=f"{REPORT}/metrics.json",
        scaling=f"{REPORT}/scaling.csv",
    log:
        f"logs/{G}/aggregate.log",
    shell:
        "{PY} -m statemix.aggregate --grid {input.grid} --parquet {output.parquet} --csv {output.csv}"
        " --metrics {output.metrics} --scaling {output.scaling} {TRACK_AGGREGATE}"
        + (" --finished-only" if ONLY_FINISHED else "") + " > {log} 2>&1"


rule mlflow_import:
    """A committed grid's finished runs into this machine's MLflow store (idempotent), for `mlflow ui` on a clone."""
    input:
        runs=run_metrics(REPORT_RUNS),
    output:
        f"logs/{G}/mlflow_import.txt",
    shell:
        "{PY} -m statemix.track import results/{G} > {output}"
