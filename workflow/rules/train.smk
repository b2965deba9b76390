rule train:
    """One training: task instance x arch x variant x width x seed (python -m statemix.train)."""
    input:
        unpack(train_inputs),
    output:
        f"{RUN}/metrics.json",
    params:
        task=lambda wc: run_of(wc).task_name,
        sets=lambda wc: grids.cli_sets(run_of(wc).overrides),
        experiment=f"track.experiment=statemix-{G}",
    threads: GRID.spec.get("threads", 1)
    resources:
        **GPUS.resources(GPU_OF, lambda wc: RUN.format(**wc), GRID.spec.get("gpu_mem_mb", 0), GRID.spec),
    log:
        f"logs/{G}/train/{{task}}/{{arch}}/{{variant}}/w{{width}}_s{{seed}}.log",
    shell:
        "{resources.gpu_env} OMP_NUM_THREADS={threads} {PY} -m statemix.train --task {params.task} --arch {wildcards.arch}"
        " --width {wildcards.width} --seed {wildcards.seed} --data $(dirname $(dirname {input.train}))"
        " --out $(dirname {output}) --set {params.experiment} {params.sets} {TRACK_TRAIN} > {log} 2>&1"
