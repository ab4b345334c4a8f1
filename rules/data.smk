# Stage 1: data and models. Tasks become data/tasks/{task}/{train,eval}.jsonl + meta.json
# in the example format; models become data/models/{model}/ with a manifest.json.


rule build_demo_world:
    output:
        world="data/demo/seed{world_seed}/world.json",
    log:
        "logs/data/demo_world_seed{world_seed}.log",
    wildcard_constraints:
        world_seed=r"\d+",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow_scripts/build_demo_world.py"


rule prepare_task:
    input:
        unpack(prepare_task_inputs),
    output:
        train="data/tasks/{task}/train.jsonl",
        eval="data/tasks/{task}/eval.jsonl",
        meta="data/tasks/{task}/meta.json",
    log:
        "logs/data/prepare_task_{task}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        task=task_config,
        data_seed=config["data"]["seed"],
    script:
        "../workflow_scripts/prepare_task.py"


rule download_model:
    output:
        manifest="data/models/{model}/manifest.json",
    log:
        "logs/models/download_model_{model}.log",
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
        hf_home=config["hf_home"],
    script:
        "../workflow_scripts/download_model.py"


rule build_model:
    input:
        unpack(build_model_inputs),
    output:
        manifest="data/models/{model}/manifest.json",
    log:
        "logs/models/build_model_{model}.log",
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
        manifest="data/models/{model}/manifest.json",
    log:
        "logs/models/link_model_{model}.log",
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
    script:
        "../workflow_scripts/link_model.py"


rule data:
    """Only the data and models of the study (no training or evaluation)."""
    input:
        expand("data/tasks/{task}/meta.json", task=TASKS),
        [model_manifest(name) for name in MODELS],
