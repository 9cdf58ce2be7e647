# One job per (agent, task, seed) cell. Launched through `shell:` with only the cell's own
# overrides as params, so editing the harness's code never re-triggers finished training.
# The declared outputs appear only when the cell has finished; the snapshot it resumes from
# (results/runs/.../work/) is not an output, so a killed or preempted job continues from it.

wildcard_constraints:
    agent="|".join(AGENTS),
    task="[a-z_]+",
    seed=r"\d+",


rule train:
    output:
        eval=f"{RUN}/eval.csv",
        train=f"{RUN}/train.csv",
        meta=f"{RUN}/meta.json",
    conda:
        "../../environment.yml"
    log:
        TRAIN_LOG,
    benchmark:
        "results/benchmarks/train/{agent}/{task}/seed{seed}.tsv"
    params:
        overrides=cell_args,
    threads: config["train"]["threads"]
    resources:
        gpu=cell_gpus,
        mem_mb=cell_mem_mb,
        runtime=cell_runtime,
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "python workflow/scripts/gpu_slot.py "
        "python -m drm.train agent={wildcards.agent} task={wildcards.task} seed={wildcards.seed} "
        # The same text as RUN with the wildcards spelled out: the command, and so Snakemake's
        # record of it, is unchanged, and finished cells are not re-triggered.
        f"out_dir={RUN.format(agent='{wildcards.agent}', task='{wildcards.task}', seed='{wildcards.seed}')} "
        "progress=false {params.overrides} > {log} 2>&1"
