rule report:
    """reports/<grid>/report.md and its figures, computed from the run table and benchmark results."""
    input:
        table=TABLE,
        grid=GRID_FILE,
        bench=benchmark_inputs(),
        code=grids.code_files("report"),
    output:
        md=f"{REPORT}/report.md",
        figures=report(directory(f"{REPORT}/figures"), patterns=["{name}.png"], category="Figures",
                       caption="../report/figures.rst"),
    log:
        f"logs/{G}/report.log",
    shell:
        "{PY} -m statemix.report --grid {input.grid} --table {input.table} --out {output.md}"
        " --figures {output.figures} --bench {input.bench} > {log} 2>&1"
