rule generate:
    """One dataset split of one task instance at one seed (python -m statemix.generate)."""
    input:
        code=grids.code_files("generate"),
    output:
        inputs=f"{DATA}/{{split}}/inputs.npy",
        targets=f"{DATA}/{{split}}/targets.npy",
        manifest=f"{DATA}/{{split}}/manifest.json",
    params:
        task=lambda wc: dataset_of(wc).task,
        sets=lambda wc: grids.cli_sets(dataset_of(wc).split_params[wc.split]),
    log:
        f"logs/{G}/generate/{{task}}_s{{seed}}_{{split}}.log",
    shell:
        "{PY} -m statemix.generate --task {params.task} --split {wildcards.split} --seed {wildcards.seed}"
        " --out $(dirname {output.manifest}) {params.sets} > {log} 2>&1"
