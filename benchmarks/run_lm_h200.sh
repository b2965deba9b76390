#!/usr/bin/env bash
# The paper grid's lm study on one GPU machine in one call: Snakemake trains it (resumable), then
# statemix.report_lm builds its section, and statemix.results packs the finished runs for the way back
# (here: python -m statemix.results unpack results.tar.gz && git add results/paper/lm).
# Usage: benchmarks/run_lm_h200.sh OUTDIR [WHEELDIR]; WHEELDIR holds the snakemake/mlflow wheels.
# LM_S (default 320) bounds the training; a rerun resumes what a timeout cut off.
set -u
out=${1:?usage: run_lm_h200.sh OUTDIR [WHEELDIR]}
mkdir -p "$out"
if [ -n "${2:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$2"/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-} PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv; nproc; git rev-parse HEAD; } > "$out/gpu.txt" 2>&1
start=$(date +%s)
timeout -k 20 "${LM_S:-320}" snakemake --config grid=paper study=lm track=false --cores "$(nproc)" \
  > "$out/snakemake.log" 2>&1
echo "snakemake rc=$? elapsed=$(( $(date +%s) - start ))s" | tee -a "$out/snakemake.log"
python3 -m statemix.report_lm --grid paper --out "$out/lm" --no-track 2>&1 | tee -a "$out/snakemake.log"
python3 -m statemix.results pack results/paper/lm --out "$out/results.tar.gz" 2>&1 | tee -a "$out/snakemake.log"
tar czf "$out/logs.tar.gz" logs/paper/train/lm data/paper/lm/*/*/manifest.json
grep -c '"status": "ok"' results/paper/lm/*/base/*/*/metrics.json 2>/dev/null | grep -c ':1$' | sed 's/^/runs ok: /'
