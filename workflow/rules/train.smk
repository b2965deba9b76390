if not BATCH:
  rule train:
      """One training: task instance x arch x variant x width x seed (python -m statemix.train)."""
      input:
          unpack(train_inputs),
      output:
          f"{RUN}/metrics.json",
      params:
          task=lambda wc: run_of(wc).task_name,
          data=lambda wc: DATA.format(**wc),
          sets=lambda wc: grids.cli_sets(run_of(wc).overrides),
          experiment=f"track.experiment=statemix-{G}",
          name=lambda wc: f"{wc.task}/{wc.arch}/{wc.variant}/w{wc.width}/s{wc.seed}",
      threads: GRID.spec.get("threads", 1)
      resources:
          **GPUS.resources(GPU_OF, lambda wc: RUN.format(**wc), GRID.spec.get("gpu_mem_mb", 0), GRID.spec),
      log:
          f"logs/{G}/train/{{task}}/{{arch}}/{{variant}}/w{{width}}_s{{seed}}.log",
      shell:
          "{resources.gpu_env} OMP_NUM_THREADS={threads} {PY} -m statemix.train --task {params.task} --arch {wildcards.arch}"
          " --width {wildcards.width} --seed {wildcards.seed} --data {params.data}"
          " --out $(dirname {output}) --run-name {params.name} --set {params.experiment} {params.sets} {TRACK_TRAIN}"
          " > {log} 2>&1"


# --config batch=true|task|arch: one job per task x variant (x arch) (statemix.grids.train_batches), trained by one
# `python -m statemix.worker` process; each run keeps its own folder and metrics.json. Committed finished runs
# join no batch (Snakemake would delete their files before rerunning it), and each batch is placed on one GPU;
# the batches with the fewest steps start first (gpus.shortest_first).
_DONE = FINISHED if results.committed(GRID) else {}
BATCHES = grids.train_batches([r for r in SELECTED if r.path(G) not in _DONE], BATCH) if BATCH else {}
_BATCH_STEPS = {k: sum(gpus.run_steps(GRID, r) for r in rs) for k, rs in BATCHES.items()}
GPU_OF_BATCH = gpus.assign(_BATCH_STEPS, GPUS.gpus)
PRIORITY_OF_BATCH = gpus.shortest_first(_BATCH_STEPS)
for _i, (_key, _runs) in enumerate(BATCHES.items()):
    rule:
        name: f"train_batch_{_i}"
        input:
            data=sorted({f"{r.dataset_path(G)}/{split}/manifest.json" for r in _runs for split in ("train", "test")}),
            code=grids.code_files("train"),
        output:
            run_metrics(_runs),
        params:
            task=_runs[0].task_name,
            sets=grids.cli_sets(_runs[0].overrides),
            runs=" ".join(f"--run {r.arch}:{r.width},{r.seed},{r.path(G)},{r.dataset_path(G)}" for r in _runs),
            experiment=f"track.experiment=statemix-{G}",
        threads: GRID.spec.get("threads", 1)
        priority: PRIORITY_OF_BATCH[_key]
        resources:
            **GPUS.resources(GPU_OF_BATCH, lambda wc, key=_key: key, GRID.spec.get("gpu_mem_mb", 0), GRID.spec),
        log:
            f"logs/{G}/train_batch/{_key}.log",
        shell:
            "{resources.gpu_env} OMP_NUM_THREADS={threads} {PY} -m statemix.worker --task {params.task}"
            " {params.runs} --set {params.experiment} {params.sets} {TRACK_TRAIN} > {log} 2>&1"
