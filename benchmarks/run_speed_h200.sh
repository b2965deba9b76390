#!/usr/bin/env bash
# The training-speed checks on one GPU machine in one call: the graphed-step and batch-worker GPU tests
# (tests/train/test_graphs_gpu.py with its one-worker-for-every-architecture case, test_train_gpu.py), then
# benchmarks/bench_grid_throughput.py with real epochs, so its rates are near the steady state.
# Usage: benchmarks/run_speed_h200.sh OUTDIR; OUTDIR = $OUT (each file lands there as soon as it exists).
# Between the tests and the benchmark, benchmarks/profile_step.py (PROFILE_S, default 120; 0 skips it) splits one
# group-step into its kernels by phase and times its replay, plain and compiled (COMPILE_STACKS, default 3;
# empty: none). BENCH_COMPILE=1 times the benchmark's graphed paths compiled, as the paper grid runs them.
# TEST_S (default 120) and BENCH_S (default 420) bound the two steps; STEPS (100) and EPOCHS (3) size the
# benchmark (100 steps = one epoch of MAD's 12,800 examples); SINGLE_ARCHS (the targets' bdlru-m4, bdlru-m2,
# hlru-m2, and lru) are timed alone. Here: copy OUTDIR/bench_grid_throughput.{md,csv}
# to reports/benchmarks/ and the test log to reports/gpu_tests/, then `python -m statemix.budget paper`.
set -u
out=${1:?usage: run_speed_h200.sh OUTDIR}
mkdir -p "$out"
export PYTHONPATH=src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; git rev-parse HEAD; python3 -m statemix.provenance id; } \
  > "$out/gpu.txt" 2>&1
timeout -k 10 "${TEST_S:-120}" python3 -m pytest -q -m gpu tests/train/test_graphs_gpu.py tests/train/test_train_gpu.py -rfE -p no:cacheprovider \
  > "$out/test_graphs_gpu.log" 2>&1
echo "gpu tests rc=$?" | tee -a "$out/test_graphs_gpu.log"
[ "${PROFILE_S:-120}" != 0 ] && timeout -k 10 "${PROFILE_S:-120}" python3 benchmarks/profile_step.py --stacks 3 \
  --compile-stacks ${COMPILE_STACKS-3} --out "$out/profile_step" > "$out/profile_step.log" 2>&1
echo "profile rc=$?" | tee -a "$out/profile_step.log"
timeout -k 10 "${BENCH_S:-420}" python3 benchmarks/bench_grid_throughput.py --steps "${STEPS:-100}" \
  --epochs "${EPOCHS:-3}" ${BENCH_COMPILE:+--compile} --single-archs ${SINGLE_ARCHS:-bdlru-m4 bdlru-m2 hlru-m2 lru} --out "$out/bench_grid_throughput" > "$out/bench.log" 2>&1
echo "benchmark rc=$?" | tee -a "$out/bench.log"
tail -40 "$out/bench.log"
