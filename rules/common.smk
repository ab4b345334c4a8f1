# Helpers shared by all rules. Nothing heavy is imported here (no torch, transformers,
# trl, peft or datasets): every cluster job parses the workflow again.
import os
import sys

from snakemake.utils import validate

import ftmatrix.config
import ftmatrix.grid
from ftmatrix.errors import ConfigError

try:
    # Clear, keyed messages first; then Snakemake's own validation against the same
    # schema (which also fills the defaults into `config`).
    ftmatrix.config.validate(config, source="config.yaml + --configfile")
except ConfigError as error:
    sys.exit(f"ftmatrix: {error}")


validate(config, "../schemas/config.schema.yaml")

# Where the Hugging Face cache lives and which rules run locally change no result: they
# are left out of the hash (a parameter of every job), so that pointing a finished study
# at a shared cache, or moving it to a cluster, does not rerun it.
PLACEMENT_KEYS = ("hf_home", "local_rules")
CONFIG_HASH = ftmatrix.config.config_hash(
    {key: value for key, value in config.items() if key not in PLACEMENT_KEYS}
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
        "download_model",
        "link_model",
        "score_cell",
        "aggregate_matrix",
        "analyse_matrix",
        "draw_figures",
        "build_journal",
        "journal_pdf",
    ],
)

workflow.localrules(*LOCAL_RULES)

VARIANTS = ftmatrix.grid.variants(config)
TRAINED = ftmatrix.grid.trained_variants(config)
CELLS = ftmatrix.grid.cells(config)
TASKS = [t["name"] for t in config["tasks"]]
MODELS = {m["name"]: m for m in config["models"]}
VARIANT_DIR = ftmatrix.grid.VARIANT_PATTERN
CELL_DIR = ftmatrix.grid.CELL_PATTERN


wildcard_constraints:
    **ftmatrix.grid.wildcard_constraints(config),


def names_alternation(names):
    """A regex matching exactly these names (or nothing, when there are none)."""
    return "|".join(sorted(names, key=len, reverse=True)) or "(?!x)x"


def models_from(source):
    return names_alternation(n for n, m in MODELS.items() if m["source"] == source)


def task_config(wildcards):
    return ftmatrix.config.task_entry(config, wildcards.task)


def model_config(wildcards):
    return MODELS[wildcards.model]


def model_manifest(name):
    return f"data/models/{name}/manifest.json"


def gb(params_b, per_b, floor):
    """Memory in MB scaled by model size (billions of parameters)."""
    return int(max(floor, params_b * per_b))


def variant_of(wildcards):
    return ftmatrix.grid.Variant(
        wildcards.model,
        wildcards.method,
        int(wildcards.rank),
        wildcards.train_task,
        int(wildcards.seed),
    )
