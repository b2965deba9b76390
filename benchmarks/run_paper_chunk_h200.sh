#!/usr/bin/env bash
# One resumable chunk of the paper grid on a GPU machine, in one call: Snakemake trains the selected cells
# (graphed steps, one process per run), then statemix.results packs the finished runs for the way back
# (here: python -m statemix.results unpack results.tar.gz && git add results/paper).
# Usage: benchmarks/run_paper_chunk_h200.sh OUTDIR WHEELDIR SECONDS SNAKEMAKE_CONFIG... (OUTDIR = $OUT: every
# file lands there as soon as it exists, so a call cut off at its limit still returns what finished; timeout -k
# kills Snakemake and its trainings if SIGTERM does not end them)
#   e.g. benchmarks/run_paper_chunk_h200.sh $OUT .whl 200 study=main task=in-context-recall batch=true
# CORES (default nproc) caps the jobs at once; with batch=true each job is one worker process.
set -u
out=${1:?usage: OUTDIR WHEELDIR SECONDS CONFIG...}; wheels=${2:?}; secs=${3:?}; shift 3
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$wheels"/*.whl
export PYTHONPATH=src:/tmp/site:${PYTHONPATH:-} PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
tag=$(echo "$*" | sed 's/[ =,]/_/g')
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; git rev-parse HEAD 2>/dev/null; python3 -m statemix.provenance id; } \
  > "$out/gpu_$tag.txt" 2>&1
start=$(date +%s)
timeout -k 20 "$secs" snakemake --keep-incomplete --config grid=paper track=false "$@" --cores "${CORES:-$(nproc)}" > "$out/snakemake_$tag.log" 2>&1
echo "snakemake rc=$? elapsed=$(( $(date +%s) - start ))s" | tee -a "$out/snakemake_$tag.log"
python3 -m statemix.results pack results/paper --out "$out/results_$tag.tar.gz" 2>&1 | tee -a "$out/snakemake_$tag.log"
tar czf "$out/logs_$tag.tar.gz" logs/paper 2>/dev/null
