#!/usr/bin/env bash
# The scan kernels on the H200 in one call (issue 16): compile every benchmark case in parallel while
# the GPU tests of the pair scans run, then the scan benchmark (both shapes, fp32 and bf16, eager and
# CUDA-graph timings), then ncu on the MAD-shape kernels of BD-LRU M=4 and H-LRU M=2 (bf16), and on BD-LRU M=4's
# joint-row pair scan (path='pair-joint'), all into OUTDIR/ncu.txt (a call returns at most 8 files).
# Usage: benchmarks/run_issue16.sh OUTDIR WHEELDIR (WHEELDIR holds the accelerated-scan wheel).
# Per-step limits (seconds): WARM_S, TEST_S, BENCH_S, NCU_S.
set -u
out=${1:?usage: run_issue16.sh OUTDIR WHEELDIR}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$2"/*.whl
export PYTHONPATH=src:benchmarks:/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
for c in hlru:1 hlru:2 hlru:3 hlru:4 hlru:5 bdlru:2 bdlru:4 bdlru:8 bdlru:16; do
  timeout "${WARM_S:-100}" python3 benchmarks/bench_scan.py --warm $c > "/tmp/warm_${c/:/-}.log" 2>&1 &
done
timeout "${TEST_S:-100}" python3 -m pytest -q -m gpu -n 6 tests/ops/test_triton_pairscan.py -rf -p no:benchmark \
  2>&1 | tail -30 > "$out/gpu_tests_pairscan.txt"
wait
grep -h "done\|Error" /tmp/warm_*.log | tail -12
tail -5 "$out/gpu_tests_pairscan.txt"
timeout "${BENCH_S:-200}" python3 benchmarks/bench_scan.py --no-compile --out "$out" 2>&1 | tee "$out/bench_scan.log" | tail -90
for c in "bdlru 4 triton" "hlru 2 triton" "bdlru 4 triton-pair-joint"; do
  set -- $c
  echo "=== ncu: $c" >> "$out/ncu.txt"
  timeout "${NCU_S:-30}" ncu --clock-control none --launch-count 2 -k regex:'^(fwd|bwd)$' \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    python3 benchmarks/profile_scan.py $1 $2 bf16 B128-T128-S128 --case $3 > /tmp/ncu_case.txt 2>&1
  cat /tmp/ncu_case.txt >> "$out/ncu.txt"
  grep -E "^  [a-z]|Duration|DRAM Throughput|L1/TEX Cache|L2 Cache Throughput|Registers Per|Achieved Occ|Warp Cycles Per Issued" \
    /tmp/ncu_case.txt
done
