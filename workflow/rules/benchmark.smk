BENCH = [f"{REPORT}/benchmark/bench_scan.csv", f"{REPORT}/benchmark/bench_layer.csv"]
# The committed GPU tables the report reads when this grid's own benchmark does not run.
COMMITTED_BENCH = ["bench_scan.csv", "bench_layer.csv", "bench_train.csv"]


def benchmark_targets():
    """The benchmark runs only where a GPU is visible; elsewhere it is skipped, and says so."""
    if USE_GPU:
        return BENCH
    print("statemix: benchmark skipped (no GPU visible); the report uses the committed reports/benchmarks tables",
          file=sys.stderr)
    return []


def benchmark_inputs():
    """Benchmark tables for the report: this grid's own run on a GPU, else the committed ones."""
    if GRID.spec.get("benchmark") and USE_GPU:
        return BENCH
    base = Path(workflow.basedir)
    return [f"reports/benchmarks/{name}" for name in COMMITTED_BENCH if (base / "reports/benchmarks" / name).exists()]


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
