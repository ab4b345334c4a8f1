# Helpers shared by all rules. Nothing heavy is imported here (no torch, transformers,
# trl, peft or datasets): every cluster job parses the workflow again.
import json
import os
import sys
from types import SimpleNamespace

from snakemake.utils import validate

import ftmatrix.config
import ftmatrix.demo_world
import ftmatrix.grid
import ftmatrix.integrity
import ftmatrix.io
import ftmatrix.models
import ftmatrix.redaction
import ftmatrix.resources
import ftmatrix.selection
import ftmatrix.tasks
import ftmatrix.workflow
from ftmatrix.errors import ConfigError

try:
    # The study files once more, strictly (duplicate keys, YAML 1.1 octals and booleans,
    # aliases are refused with file and line), before anything copies or prints the config.
    for path in [*workflow.configfiles, *workflow.overwrite_configfiles]:
        ftmatrix.config.read_yaml(path)
    # Clear, keyed messages first; then Snakemake's own validation against the same
    # schema (which also fills the defaults into `config`).
    ftmatrix.config.validate(config, source="config.yaml + --configfile")
except ConfigError as error:
    sys.exit(f"ftmatrix: {error}")


validate(config, "../schemas/config.schema.yaml")

# Each study keeps its outputs apart (named by its `study` key), so two studies run in one
# checkout never overwrite each other's data, results or journal. The demo world is a pure
# function of its seed and is shared (data/demo/seed<n>/).
STUDY = config["study"]
DATA = f"data/{STUDY}"
RESULTS = f"results/{STUDY}"
LOGS = f"logs/{STUDY}"
BENCHMARKS = f"benchmarks/{STUDY}"

# Each output folder must be a folder (or not exist yet): a file in its place would stop the
# first job that writes there with a traceback.
for _folder in (
    "data",
    "results",
    "logs",
    "benchmarks",
    DATA,
    RESULTS,
    LOGS,
    BENCHMARKS,
):
    if os.path.exists(_folder) and not os.path.isdir(_folder):
        sys.exit(
            f"ftmatrix: {os.path.abspath(_folder)} is a file, but the study writes into a folder of that "
            f"name; move or rename the file and run again."
        )


# One Hugging Face cache for every job (and, on a cluster, every node that mounts it):
# models and datasets are fetched once, by the download rules, never once per job.
if config["hf_home"]:
    os.environ.update(
        HF_HOME=str(ftmatrix.config.resolve_path(config["hf_home"], workflow.basedir))
    )

# Cheap jobs, and the downloads (compute nodes often have no internet), run in the main
# Snakemake process (on a cluster: the submit host) instead of as cluster jobs. A study
# may choose its own list with the config key `local_rules` (see docs/cluster.md).
LOCAL_RULES = config.get(
    "local_rules",
    [
        "build_demo_world",
        "prepare_task",
        "decontaminate_task",
        "download_model",
        "link_model",
        "select_learning_rate",
        "tabulate_sweeps",
        "evaluate_endpoint",
        "score_cell",
        "aggregate_matrix",
        "analyse_matrix",
        "draw_figures",
        "build_journal",
        "journal_pdf",
    ],
)

workflow.localrules(*LOCAL_RULES)


def check_local_rules():
    """Called at the end of the Snakefile, once the workflow is complete: a misspelt entry of
    `local_rules` would otherwise be ignored and its jobs sent to the cluster."""
    known = {r.name for r in workflow.rules}
    unknown = sorted(set(LOCAL_RULES) - known)
    if unknown:
        sys.exit(
            f"ftmatrix: local_rules names {', '.join(map(repr, unknown))}, which the workflow "
            f"does not have; its rules are: {', '.join(sorted(known))}. Fix the spelling or "
            f"remove the entry."
        )


# Training and evaluation jobs hold a GPU of the machine: they count 1 against the global
# `gpu` limit of profiles/default (1 unless --resources gpu=N) and each locks a GPU of its
# own (ftmatrix.workflow.claim_gpu), so two never share a device and a timed pass never
# runs beside another job's work on it. On a machine without a
# GPU they count 0 and run side by side, bounded by their threads and --cores. (On a
# cluster, profiles/slurm sets them to 0 and asks SLURM for a GPU per job instead.)
GPU_JOB = 1 if ftmatrix.workflow.machine_has_gpu() else 0

TRAINED = ftmatrix.grid.trained_variants(config)
RUNS = ftmatrix.grid.runs(config)
CELLS = ftmatrix.grid.cells(config)
TASKS = [t["name"] for t in config["tasks"]]
TRAIN_TASKS = sorted({variant.train_task for variant in TRAINED})
MODELS = {m["name"]: m for m in config["models"]}
# Models behind an OpenAI-compatible endpoint (source: api) have no folder and no manifest:
# rule evaluate_endpoint generates their cells, timing every request, so the timing rounds
# leave them out.
ENDPOINTS = {n: m for n, m in MODELS.items() if m["source"] == "api"}
LOCAL_MODELS = {n: m for n, m in MODELS.items() if n not in ENDPOINTS}
LOCAL_CELLS = [c for c in CELLS if c.variant.model not in ENDPOINTS]
VARIANT_DIR = ftmatrix.grid.VARIANT_PATTERN
CELL_DIR = ftmatrix.grid.CELL_PATTERN
RUN_DIR = ftmatrix.grid.RUN_PATTERN

# The code of the stages that compute from saved results in seconds (scoring, the matrix, the
# analysis, figures, the journal) is a param of their rules: a change in how answers are scored
# or tables computed redoes those stages, never a training or a generation (README,
# "Reruns"). Scoring is keyed on each task kind's own grading code and on the versions of the
# libraries that grade (math-verify …).
STUDY_KINDS = sorted({t["kind"] for t in config["tasks"]})
GRADING_CODE = {kind: ftmatrix.tasks.grading_code(kind, config) for kind in STUDY_KINDS}
GRADING_LIBRARIES = ftmatrix.tasks.grading_libraries()
MATRIX_CODE = ftmatrix.workflow.source_sha256("aggregate", "records")
ANALYSIS_CODE = ftmatrix.workflow.source_sha256(
    "analysis",
    "bootstrap",
    "metrics",
    extra=tuple(ftmatrix.tasks.registry(config).files[kind] for kind in STUDY_KINDS),
)
FIGURES_CODE = ftmatrix.workflow.source_sha256("figures")
JOURNAL_CODE = ftmatrix.workflow.source_sha256("journal", "findings")


def grading_code(wildcards):
    return GRADING_CODE[ftmatrix.config.task_entry(config, wildcards.eval_task)["kind"]]


wildcard_constraints:
    **ftmatrix.grid.wildcard_constraints(config),


def names_alternation(names):
    """A regex matching exactly these names (or nothing, when there are none)."""
    return "|".join(sorted(names, key=len, reverse=True)) or "(?!x)x"


def models_from(source):
    return names_alternation(n for n, m in MODELS.items() if m["source"] == source)


def canonical(value):
    """A param in one canonical form: Snakemake compares params by their repr, in which dict
    keys keep their order; sorted keys make key order and formatting in a study file change
    nothing. Tokens and URL passwords are masked: Snakemake stores params in .snakemake/metadata.
    """
    return ftmatrix.redaction.redact_value(
        json.loads(json.dumps(value, sort_keys=True))
    )


def task_config(wildcards):
    return ftmatrix.config.task_entry(config, wildcards.task)


# What a model folder depends on: not `params_b` (it sizes jobs), `finetune` (it shapes
# the grid) nor `hour_usd` (a price, read by the matrix).
MODEL_RESOURCE_KEYS = ("params_b", "finetune", "hour_usd")


def model_settings(name):
    return canonical(
        {k: v for k, v in MODELS[name].items() if k not in MODEL_RESOURCE_KEYS}
    )


def model_config(wildcards):
    return model_settings(wildcards.model)


def local_model_files(wildcards):
    """Name, size and modification time of each file of a linked folder (stat only): a param,
    so replacing, adding or removing a file — even by a copy that keeps an older modification
    time, which Snakemake's mtime check misses — reruns link_model, which hashes every file
    again, and then every job that used the model."""
    folder = ftmatrix.config.resolve_path(
        MODELS[wildcards.model]["path"], workflow.basedir
    )
    return ftmatrix.models.folder_signature(folder)


# A task's keys that shape no prepared data: max_new_tokens is read at evaluation, the others in
# training (a task's own rates, seeds and epochs retrain its variants, not its data).
NOT_DATA_TASK_KEYS = ("max_new_tokens", "learning_rate", "seeds", "epochs")


def task_settings(wildcards):
    """What the prepared data depends on: the source, the sizes, the licence it records."""
    task = task_config(wildcards)
    return canonical({k: v for k, v in task.items() if k not in NOT_DATA_TASK_KEYS})


def model_manifest(name):
    return f"{DATA}/models/{name}/manifest.json"


def task_file(task, split):
    return f"{DATA}/tasks/{task}/{split}"


def variant_of(wildcards):
    return ftmatrix.grid.Variant(
        wildcards.model,
        wildcards.method,
        int(wildcards.rank),
        wildcards.train_task,
        int(wildcards.seed),
    )


# --- data stage --------------------------------------------------------


def project_input(path):
    """A configured file as an input of a job: relative to the working directory when it lies inside
    it, so moving the whole project folder changes no input path (and reruns nothing).
    """
    resolved = ftmatrix.config.resolve_path(path, workflow.basedir)
    here = os.path.abspath(os.getcwd())
    if os.path.abspath(resolved).startswith(here + os.sep):
        return os.path.relpath(resolved, here)
    return str(resolved)


def prepare_task_inputs(wildcards):
    source = task_config(wildcards)["source"]
    if source["type"] == "demo":
        return {"world": f"data/demo/seed{source['seed']}/world.json"}
    if source["type"] == "local":
        paths = []
        for key in ("train", "eval"):
            value = source.get(key) or []
            paths += [value] if isinstance(value, str) else value
        return {"files": [project_input(p) for p in paths]}
    return {}


def build_model_inputs(wildcards):
    build = MODELS[wildcards.model]["build"]
    if build["corpus"] == "none":
        return {}
    if build["corpus"] == "demo":
        return {"world": f"data/demo/seed{build['seed']}/world.json"}
    return {"corpus": project_input(build["corpus"])}


# --- train stage -------------------------------------------------------


def train_inputs(wildcards):
    # The held-out loss (which selects the learning rate) is the validation split's; the
    # eval set is never read in training.
    # Both are the decontaminated rows: none overlaps an eval row of the study.
    return {
        "model": model_manifest(wildcards.model),
        "train": decontaminated_file(wildcards.train_task, "train.jsonl"),
        "heldout": decontaminated_file(wildcards.train_task, "valid.jsonl"),
    }


def decontaminated_file(task, split):
    return f"{DATA}/decontaminated/{task}/{split}"


def train_settings(wildcards):
    """What determines the trained weights and train_metrics.json, and nothing else: the
    method's own learning rate (a new LoRA rate reruns no full fine-tuning), the LoRA
    settings for LoRA only, and no bookkeeping (checkpoint cadence, tensorboard), which the
    job reads from the config."""
    method = wildcards.method
    train = {
        k: v
        for k, v in config["train"].items()
        if k not in ftmatrix.config.TRAIN_BOOKKEEPING_KEYS
    }
    train["learning_rate"] = {method: float(wildcards.lr)}
    train["epochs"] = ftmatrix.grid.task_epochs(
        ftmatrix.config.task_entry(config, wildcards.train_task), config["train"]
    )
    settings = {
        "variant": run_of(wildcards).path,
        "model": model_settings(wildcards.model),
        "method": method,
        "rank": int(wildcards.rank),
        "seed": int(wildcards.seed),
        "train": train,
        "enable_thinking": config["enable_thinking"],
    }
    if method == "lora":
        settings["lora"] = {k: v for k, v in config["lora"].items() if k != "ranks"}
    return canonical(settings)


def checkpoint_dir(wildcards):
    return f"{RESULTS}/train/{run_of(wildcards).path}/checkpoints"


def run_of(wildcards):
    return ftmatrix.grid.Run(variant_of(wildcards), wildcards.lr)


def sweep_metrics(wildcards):
    """The training metrics of every run of a variant's learning-rate sweep."""
    runs = ftmatrix.grid.runs_of(config, variant_of(wildcards))
    return [f"{RESULTS}/train/{run.path}/train_metrics.json" for run in runs]


def selected_train_metrics(wildcards):
    """The training metrics of each variant's selected run (known once the checkpoints ran)."""
    out = []
    for variant in TRAINED:
        selection = checkpoints.select_learning_rate.get(
            **variant.as_dict()
        ).output.selection
        run = ftmatrix.selection.LrSelection.read(selection).run_path()
        out.append(f"{RESULTS}/train/{run}/train_metrics.json")
    return out


def selection_files():
    return [f"{RESULTS}/train/{variant.path}/selection.json" for variant in TRAINED]


def selected_model(wildcards):
    """The model folder of the run the checkpoint selected (known once it has run)."""
    selection = checkpoints.select_learning_rate.get(
        **variant_of(wildcards).as_dict()
    ).output.selection
    run = ftmatrix.selection.LrSelection.read(selection).run_path()
    return f"{RESULTS}/train/{run}/model"


def job_threads(wildcards):
    return ftmatrix.workflow.job_threads(MODELS[wildcards.model]["params_b"])


def train_mem_mb(wildcards, attempt):
    return (
        ftmatrix.resources.train_mem_mb(
            MODELS[wildcards.model],
            wildcards.method,
            int(wildcards.rank),
            config["train"],
        )
        * attempt
    )


def train_runtime(wildcards, attempt):
    return (
        ftmatrix.resources.train_runtime_min(
            MODELS[wildcards.model],
            wildcards.method,
            int(wildcards.rank),
            config["train"],
            ftmatrix.config.task_entry(config, wildcards.train_task),
        )
        * attempt
    )


# --- evaluate stage ----------------------------------------------------


def evaluate_inputs(wildcards):
    inputs = {
        "model": model_manifest(wildcards.model),
        "eval": task_file(wildcards.eval_task, "eval.jsonl"),
    }
    if wildcards.method != "base":
        inputs["trained"] = selected_model(wildcards)
    return inputs


def eval_task_entry(wildcards, keys=("name", "kind", "max_new_tokens")):
    # Only what decides the generations or the scores: a new train_size must not
    # rerun every evaluation (params are one of Snakemake's rerun triggers).
    task = ftmatrix.config.task_entry(config, wildcards.eval_task)
    return {k: task[k] for k in keys}


def evaluate_settings(wildcards):
    """What determines a cell's generations: the model, the task's prompt and budget, the
    decoding settings; not the bootstrap (scoring), not the timing (time_round) and not the
    training settings (the trained model is an input). The quality pass times nothing
    (latency_samples 0): it may run beside other jobs."""
    ev = config["evaluate"]
    skip = ftmatrix.config.SCORING_KEYS + ftmatrix.config.TIMING_KEYS
    return canonical(
        {
            "cell": f"{variant_of(wildcards).path}/{wildcards.eval_task}",
            "model": model_settings(wildcards.model),
            "method": wildcards.method,
            "task": eval_task_entry(wildcards),
            "evaluate": {
                **{k: v for k, v in ev.items() if k not in skip},
                "latency_samples": 0,
                "warmup": 0,
            },
            "enable_thinking": config["enable_thinking"],
        }
    )


# --- endpoint cells (source: api) ---------------------------------------
# Where each endpoint's shared limits live (a lock per concurrency slot, a token bucket): one
# folder for every study of the checkout, since studies may share an endpoint.
ENDPOINT_STATE = "results/.endpoints"


def endpoint_inputs(wildcards):
    inputs = {"eval": task_file(wildcards.eval_task, "eval.jsonl")}
    serve = ENDPOINTS[wildcards.model]["api"]["serve"]
    if serve:
        inputs["served"] = model_manifest(serve["model"])
    return inputs


# What prices a cell, not what it generates: a price change re-aggregates, it sends nothing.
ENDPOINT_PRICE_KEYS = ("input_per_million_usd", "output_per_million_usd")


def endpoint_settings(wildcards):
    entry = model_settings(wildcards.model)
    entry["api"] = {
        k: v for k, v in entry["api"].items() if k not in ENDPOINT_PRICE_KEYS
    }
    return canonical(
        {
            "cell": f"{variant_of(wildcards).path}/{wildcards.eval_task}",
            "model": entry,
            "task": eval_task_entry(wildcards),
            "enable_thinking": config["enable_thinking"],
        }
    )


def endpoint_mem_mb(wildcards, attempt):
    serve = ENDPOINTS[wildcards.model]["api"]["serve"]
    served = MODELS[serve["model"]]["params_b"] if serve else 0.0
    return int(1_000 + (3_000 + 6_000 * served if serve else 0)) * attempt


def endpoint_runtime(wildcards, attempt):
    # Minutes: every sample's request at up to its timeout, max_concurrency at a time.
    api = ENDPOINTS[wildcards.model]["api"]
    task = ftmatrix.config.task_entry(config, wildcards.eval_task)
    seconds = task["eval_size"] * api["timeout_s"] / api["max_concurrency"]
    return int(10 + seconds / 60) * attempt


# --- timing rounds -------------------------------------------------------
# Latency is timed apart from the quality pass, in `evaluate.timing_rounds` jobs of rule
# time_round, each over every cell (ftmatrix.timing). A round holds every core of the machine
# (threads = --cores; Snakemake never runs jobs whose threads sum above --cores), so no other
# job of the workflow runs beside a timed pass, on a CPU or a GPU machine, with or without a
# profile; quality passes (one thread each for small models) still run side by side.
TIMED = config["evaluate"]["latency_samples"] != 0
TIMING_ROUNDS = list(range(1, config["evaluate"]["timing_rounds"] + 1)) if TIMED else []


def timing_file(cell_path, round_number):
    return f"{RESULTS}/eval/{cell_path}/timing/round{round_number}.json"


def cell_timings(wildcards):
    """A cell's timing rounds (none when evaluate.latency_samples is 0)."""
    if wildcards.model in ENDPOINTS:
        return []
    cell = f"{variant_of(wildcards).path}/{wildcards.eval_task}"
    return [timing_file(cell, r) for r in TIMING_ROUNDS]


def trained_model_of(variant):
    """The trained folder a variant's cells are evaluated with (as evaluate_cell's input)."""
    wildcards = SimpleNamespace(**variant.as_dict(), eval_task=TASKS[0])
    return evaluate_inputs(wildcards)["trained"]


def timing_inputs(wildcards):
    return {
        "models": [model_manifest(name) for name in LOCAL_MODELS],
        "trained": [trained_model_of(v) for v in TRAINED],
        "evals": [task_file(task, "eval.jsonl") for task in TASKS],
    }


def timing_settings(wildcards):
    """What determines a round's timed generations: every cell's model and task budget and
    the timing settings; not the quality pass's batch size, not the bootstrap."""
    ev = config["evaluate"]
    return canonical(
        {
            "round": int(wildcards.round),
            "rounds": ev["timing_rounds"],
            "evaluate": {
                k: ev[k]
                for k in (
                    "latency_samples",
                    "warmup",
                    "precision",
                    "merge_lora",
                    "timing_engine",
                )
            },
            "enable_thinking": config["enable_thinking"],
            "models": {name: model_settings(name) for name in LOCAL_MODELS},
            "tasks": {
                t["name"]: {k: t[k] for k in ("kind", "max_new_tokens")}
                for t in config["tasks"]
            },
            "cells": [cell.path for cell in LOCAL_CELLS],
        }
    )


def timing_threads(wildcards):
    # Every core Snakemake may use: nothing else runs beside a timed pass.
    cores = workflow.global_resources.get("_cores")
    return getattr(cores, "value", cores) or 1


def timing_mem_mb(wildcards, attempt):
    # One model at a time, batch size 1.
    largest = max(m["params_b"] for m in LOCAL_MODELS.values())
    return int(3_000 + 4_000 * largest) * attempt


def timing_runtime(wildcards, attempt):
    # Minutes: every cell's timed samples and warm-up one at a time, at up to max_new_tokens,
    # about 30 ms per token for a 2B model (more for larger ones).
    ev = config["evaluate"]
    minutes = 10.0
    for cell in LOCAL_CELLS:
        task = ftmatrix.config.task_entry(config, cell.eval_task)
        latency = ev["latency_samples"]
        timed = (
            task["eval_size"] if latency is None else min(latency, task["eval_size"])
        )
        per_token_s = 0.03 * max(1.0, MODELS[cell.variant.model]["params_b"] / 2)
        minutes += task["max_new_tokens"] * (timed + ev["warmup"]) * per_token_s / 60
    return int(minutes) * attempt


def scoring_settings(wildcards):
    return canonical(
        {
            "task": eval_task_entry(wildcards, keys=("name", "kind")),
            **{k: config["evaluate"][k] for k in ftmatrix.config.SCORING_KEYS},
        }
    )


def cost_settings():
    """The prices the matrix reads: the cost section, and each model's own hour_usd."""
    return canonical(
        {
            **config["cost"],
            "model_hour_usd": {n: m.get("hour_usd") for n, m in MODELS.items()},
            "endpoint_prices": {
                n: {k: m["api"][k] for k in ENDPOINT_PRICE_KEYS}
                for n, m in ENDPOINTS.items()
            },
        }
    )


def analysis_settings():
    return canonical({k: config["evaluate"][k] for k in ftmatrix.config.SCORING_KEYS})


def journal_settings():
    """The journal shows the whole study (its description, prices, settings), so any edit
    rebuilds it; in canonical form, so reordering a study file does not."""
    shown = {k: v for k, v in config.items() if k not in ftmatrix.config.PLACEMENT_KEYS}
    shown["train"] = {
        k: v
        for k, v in config["train"].items()
        if k not in ftmatrix.config.TRAIN_BOOKKEEPING_KEYS
    }
    return canonical(shown)


def evaluate_mem_mb(wildcards, attempt):
    # Runtime, fp32 weights, and the larger of loading's bf16 copy and a batch's KV cache.
    return (
        ftmatrix.resources.evaluate_mem_mb(
            MODELS[wildcards.model],
            ftmatrix.config.task_entry(config, wildcards.eval_task),
            config["evaluate"],
        )
        * attempt
    )


def evaluate_runtime(wildcards, attempt):
    # Minutes: the batched quality pass at up to max_new_tokens, at about 30 ms per token for
    # a 2B model (more for larger ones).
    task = ftmatrix.config.task_entry(config, wildcards.eval_task)
    ev = config["evaluate"]
    per_token_s = 0.03 * max(1.0, MODELS[wildcards.model]["params_b"] / 2)
    tokens = task["max_new_tokens"] * task["eval_size"] / ev["batch_size"]
    return int(10 + tokens * per_token_s / 60) * attempt


# `params_b` sizes every job's memory and time; once a model's manifest exists, its real
# parameter count tells whether the declared size is far off (a warning, not a stop: the
# study still runs, with requests sized from the declared number).
for _name, _model in LOCAL_MODELS.items():
    _warning = ftmatrix.workflow.declared_size_warning(
        _name, _model["params_b"], model_manifest(_name)
    )
    if _warning:
        print(f"ftmatrix: warning: {_warning}", file=sys.stderr)
