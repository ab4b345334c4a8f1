# Stage 1: data and models. Tasks become data/<study>/tasks/{task}/{train,valid,eval}.jsonl +
# meta.json in the example format; models become data/<study>/models/{model}/ with a
# manifest.json. The demo world (data/demo/seed<n>/) depends on its seed alone and is shared.


rule build_demo_world:
    output:
        world="data/demo/seed{world_seed}/world.json",
    log:
        "logs/demo/world_seed{world_seed}.log",
    wildcard_constraints:
        world_seed=r"\d+",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        version=ftmatrix.demo_world.WORLD_VERSION,
    script:
        "../workflow_scripts/build_demo_world.py"


rule prepare_task:
    input:
        unpack(prepare_task_inputs),
    output:
        train=f"{DATA}/tasks/{{task}}/train.jsonl",
        valid=f"{DATA}/tasks/{{task}}/valid.jsonl",
        eval=f"{DATA}/tasks/{{task}}/eval.jsonl",
        meta=f"{DATA}/tasks/{{task}}/meta.json",
    log:
        f"{LOGS}/data/prepare_task_{{task}}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        task=task_settings,
        data_seed=config["data"]["seed"],
    script:
        "../workflow_scripts/prepare_task.py"


# Before any training: each training task's rows against every eval row of the study
# (ftmatrix.decontaminate); training and validation read the rows it keeps.
rule decontaminate_task:
    input:
        train=task_file("{task}", "train.jsonl"),
        valid=task_file("{task}", "valid.jsonl"),
        evals=[task_file(task, "eval.jsonl") for task in TASKS],
    output:
        train=f"{DATA}/decontaminated/{{task}}/train.jsonl",
        valid=f"{DATA}/decontaminated/{{task}}/valid.jsonl",
        report=f"{DATA}/decontaminated/{{task}}/report.json",
    log:
        f"{LOGS}/data/decontaminate_task_{{task}}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=canonical(config["data"]["decontamination"]),
    script:
        "../workflow_scripts/decontaminate_task.py"


rule download_model:
    output:
        manifest=f"{DATA}/models/{{model}}/manifest.json",
    log:
        f"{LOGS}/models/download_model_{{model}}.log",
    wildcard_constraints:
        model=models_from("hub"),
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        model=model_config,
    script:
        "../workflow_scripts/download_model.py"


rule build_model:
    input:
        unpack(build_model_inputs),
    output:
        manifest=f"{DATA}/models/{{model}}/manifest.json",
    log:
        f"{LOGS}/models/build_model_{{model}}.log",
    wildcard_constraints:
        model=models_from("build"),
    conda:
        "../envs/data.yaml"
    # One thread: a tiny model gains little from more, the builds of a study run side by
    # side, and the same seed gives the same weights whatever the machine's core count.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        model=model_config,
    script:
        "../workflow_scripts/build_model.py"


rule link_model:
    output:
        manifest=f"{DATA}/models/{{model}}/manifest.json",
    log:
        f"{LOGS}/models/link_model_{{model}}.log",
    wildcard_constraints:
        model=models_from("local"),
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        model=model_config,
        files=local_model_files,
    script:
        "../workflow_scripts/link_model.py"


rule data:
    """Only the data and models of the study (no training or evaluation)."""
    input:
        [task_file(task, "meta.json") for task in TASKS],
        [decontaminated_file(task, "report.json") for task in TRAIN_TASKS],
        [model_manifest(name) for name in LOCAL_MODELS],
