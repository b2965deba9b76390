BENCH = f"{REPORT}/benchmark/throughput.csv"


def benchmark_targets():
    """The benchmark runs only where a GPU is visible; elsewhere it is skipped, and says so."""
    if USE_GPU:
        return [BENCH]
    print("statemix: benchmark skipped (no GPU visible); the report uses reports/benchmarks/*.csv if present",
          file=sys.stderr)
    return []


def benchmark_inputs():
    if GRID.spec.get("benchmark") and USE_GPU:
        return [BENCH]
    return sorted(str(p) for p in Path("reports/benchmarks").glob("*.csv"))


rule benchmark:
    """Throughput of the layers on the GPU (benchmarks/bench_scan.py), holding the whole GPU."""
    input:
        code=grids.code_files("benchmark"),
    output:
        BENCH,
    resources:
        gpu_mem_mb=(workflow.global_resources.get("gpu_mem_mb") or 0) if USE_GPU else 0,
    log:
        f"logs/{G}/benchmark.log",
    shell:
        "{PY} benchmarks/bench_scan.py --csv {output} > {log} 2>&1"
