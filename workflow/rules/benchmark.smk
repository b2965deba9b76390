BENCH = [f"{REPORT}/benchmark/bench_scan.csv", f"{REPORT}/benchmark/layer_h200.csv"]


def benchmark_targets():
    """The benchmark runs only where a GPU is visible; elsewhere it is skipped, and says so."""
    if USE_GPU:
        return BENCH
    print("statemix: benchmark skipped (no GPU visible); the report uses reports/benchmarks/*_h200.csv if present",
          file=sys.stderr)
    return []


def benchmark_inputs():
    """Benchmark tables for the report: this grid's own run on a GPU, else the committed ones."""
    if GRID.spec.get("benchmark") and USE_GPU:
        return BENCH
    base = Path(workflow.basedir)
    return [str(p.relative_to(base)) for p in sorted((base / "reports/benchmarks").glob("*.csv"))
            if (p.name == "bench_scan.csv" or ("_h200" in p.name and p.name.startswith(("layer", "train"))))
            and "history" not in p.name]


rule benchmark:
    """Scan and whole-layer throughput on the GPU (benchmarks/bench_scan.py, bench_layer.py), GPU to itself."""
    input:
        code=grids.code_files("benchmark"),
    output:
        BENCH,
    resources:
        **GPUS.resources({"benchmark": GPUS.gpus[0] if GPUS.gpus else ""}, lambda wc: "benchmark", GPUS.pool_mb, GRID.spec),
    log:
        f"logs/{G}/benchmark.log",
    shell:
        "({resources.gpu_env} {PY} benchmarks/bench_scan.py --out $(dirname {output[0]})"
        " && {resources.gpu_env} {PY} benchmarks/bench_layer.py --out $(dirname {output[0]})) > {log} 2>&1"
