# Stage 3: one evaluation job per cell (variant × evaluation task): the batched quality
# pass (evaluate_cell); latency timed apart, at batch size 1, in rounds over every cell
# (time_round: each round holds the whole machine); then scoring from the generations and
# the rounds alone (score_cell), so a change of answer extraction or metric re-scores
# without generating.


rule evaluate_cell:
    input:
        unpack(evaluate_inputs),
    output:
        generations=f"{RESULTS}/eval/{CELL_DIR}/generations.jsonl",
        info=f"{RESULTS}/eval/{CELL_DIR}/generation.json",
    log:
        f"{LOGS}/eval/{CELL_DIR}.log",
    benchmark:
        f"{BENCHMARKS}/eval/{CELL_DIR}.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: job_threads
    resources:
        gpu=GPU_JOB,
        mem_mb=evaluate_mem_mb,
        runtime=evaluate_runtime,
    params:
        settings=evaluate_settings,
    script:
        "../workflow_scripts/evaluate_cell.py"


rule evaluate_endpoint:
    """The cells of a model behind an OpenAI-compatible endpoint (source: api): one streamed
    request per sample, every one timed; no GPU; run on the submit host of a cluster (a local
    rule: hosted APIs need the internet, which compute nodes often lack), with the endpoint's
    concurrency and rate limits shared by all its cells (ftmatrix.engines.openai_endpoint).
    """
    input:
        unpack(endpoint_inputs),
    output:
        generations=f"{RESULTS}/eval/{CELL_DIR}/generations.jsonl",
        info=f"{RESULTS}/eval/{CELL_DIR}/generation.json",
    log:
        f"{LOGS}/endpoint/{CELL_DIR}.log",
    wildcard_constraints:
        model=names_alternation(ENDPOINTS),
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=endpoint_mem_mb,
        runtime=endpoint_runtime,
    params:
        settings=endpoint_settings,
        state_dir=ENDPOINT_STATE,
    script:
        "../workflow_scripts/evaluate_endpoint.py"


ruleorder: evaluate_endpoint > evaluate_cell


rule time_round:
    input:
        unpack(timing_inputs),
    output:
        timings=[timing_file(cell.path, "{round}") for cell in LOCAL_CELLS],
    log:
        f"{LOGS}/timing/round{{round}}.log",
    benchmark:
        f"{BENCHMARKS}/timing/round{{round}}.tsv"
    wildcard_constraints:
        round=r"[1-9][0-9]*",
    conda:
        "../envs/evaluate.yaml"
    threads: timing_threads
    resources:
        gpu=GPU_JOB,
        mem_mb=timing_mem_mb,
        runtime=timing_runtime,
    params:
        settings=timing_settings,
    script:
        "../workflow_scripts/time_round.py"


rule score_cell:
    input:
        generations=f"{RESULTS}/eval/{CELL_DIR}/generations.jsonl",
        info=f"{RESULTS}/eval/{CELL_DIR}/generation.json",
        eval=f"{DATA}/tasks/{{eval_task}}/eval.jsonl",
        timings=cell_timings,
    output:
        predictions=f"{RESULTS}/eval/{CELL_DIR}/predictions.jsonl",
        metrics=f"{RESULTS}/eval/{CELL_DIR}/metrics.json",
    log:
        f"{LOGS}/score/{CELL_DIR}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=scoring_settings,
        code=grading_code,
        libraries=GRADING_LIBRARIES,
    script:
        "../workflow_scripts/score_cell.py"


rule evaluate:
    """Only the evaluation jobs of the study."""
    input:
        expand(
            f"{RESULTS}/eval/{CELL_DIR}/metrics.json",
            zip,
            **ftmatrix.grid.columns(CELLS),
        ),
