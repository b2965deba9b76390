#!/usr/bin/env bash
# GPU tests and benchmarks of the Triton scans in one go (H200 session).
# Usage: benchmarks/run_h200.sh OUTDIR [WHEELDIR]; WHEELDIR holds the accelerated-scan wheel.
# Time limits per step (seconds) come from TEST_S, SWEEP_S (0 skips the sweep), BENCH_S, LAYER_S.
set -u
out=${1:?usage: run_h200.sh OUTDIR [WHEELDIR]}
mkdir -p "$out"
if [ -n "${2:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$2"/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
[ "${TEST_S:-200}" != 0 ] && timeout "${TEST_S:-200}" python3 -m pytest -q -m gpu -n 8 tests/ops/test_triton.py -rf -p no:benchmark 2>&1 | tail -40 | tee "$out/gpu_tests.txt"
[ "${SWEEP_S:-0}" != 0 ] && timeout "$SWEEP_S" python3 benchmarks/sweep_triton.py --out "$out" 2>&1 | tail -60
timeout "${BENCH_S:-240}" python3 benchmarks/bench_scan.py --out "$out" --pytorch-shapes ${PYTORCH_SHAPES:-B128-T128-S128} 2>&1 | tee "$out/bench_scan.log" | grep -v "scan   \|reference" | tail -70
timeout "${LAYER_S:-60}" python3 benchmarks/bench_layer.py --out "$out" 2>&1 | grep "^{" | tail -15
