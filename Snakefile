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


rule all:
    default_target: True
    input:
        "results/matrix.csv",
        "results/journal/journal.html",
        "results/journal/journal.pdf",
