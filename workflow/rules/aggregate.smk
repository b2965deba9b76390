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
