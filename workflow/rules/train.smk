rule train:
    """One training: task instance x arch x variant x width x seed (python -m statemix.train)."""
    input:
        train=f"{DATA}/train/manifest.json",
        test=f"{DATA}/test/manifest.json",
        code=grids.code_files("train"),
    output:
        f"{RUN}/metrics.json",
    params:
        task=lambda wc: run_of(wc).task_name,
        sets=lambda wc: grids.cli_sets(run_of(wc).overrides),
        experiment=f"track.experiment=statemix-{G}",
        name=lambda wc: f"{wc.task}/{wc.arch}/{wc.variant}/w{wc.width}/s{wc.seed}",
    threads: GRID.spec.get("threads", 1)
    resources:
        gpu_mem_mb=GRID.spec.get("gpu_mem_mb", 0) if USE_GPU else 0,
    log:
        f"logs/{G}/train/{{task}}/{{arch}}/{{variant}}/w{{width}}_s{{seed}}.log",
    shell:
        "OMP_NUM_THREADS={threads} {PY} -m statemix.train --task {params.task} --arch {wildcards.arch}"
        " --width {wildcards.width} --seed {wildcards.seed} --data $(dirname $(dirname {input.train}))"
        " --out $(dirname {output}) --run-name {params.name} --set {params.experiment} {params.sets} {TRACK_TRAIN}"
        " > {log} 2>&1"
