# ftmatrix: does a small model, fine-tuned locally, match a bigger base model,
# and at what latency and cost? See README.md; the grid lives in ftmatrix/grid.py.
import os

from snakemake.utils import min_version

min_version("9.0")


# The reference study; a study file given with --configfile is merged over it.
configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/journal.smk"


# Everything a study produces lives under results/<study>/ (and its data under
# data/<study>/), named by the study's `study` key: two studies never share outputs.
rule all:
    default_target: True
    input:
        f"{RESULTS}/matrix.csv",
        f"{RESULTS}/journal/journal.html",
        f"{RESULTS}/journal/journal.pdf",


# Warm start (config key warm_start, ftmatrix/warm.py): a local run's jobs are forked from a
# process that has imported torch, transformers, PEFT and TRL once.
_WARM_SERVER = []


onstart:
    if config["warm_start"] and workflow.local_exec and not workflow.remote_exec:
        import ftmatrix.warm

        _WARM_SERVER.append(ftmatrix.warm.start(f"{LOGS}/warm_server.log")[0])


onsuccess:
    if _WARM_SERVER:
        import ftmatrix.warm

        ftmatrix.warm.stop(_WARM_SERVER.pop())


onerror:
    if _WARM_SERVER:
        import ftmatrix.warm

        ftmatrix.warm.stop(_WARM_SERVER.pop())


check_local_rules()
