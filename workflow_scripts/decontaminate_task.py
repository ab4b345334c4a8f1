"""Compare one training task's rows with every eval row of the study; write the rows to train on."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.decontaminate import decontaminate_task

    settings = snakemake.params.settings
    decontaminate_task(
        snakemake.wildcards.task,
        train_file=snakemake.input.train,
        valid_file=snakemake.input.valid,
        eval_files={Path(p).parent.name: p for p in snakemake.input.evals},
        out_train=snakemake.output.train,
        out_valid=snakemake.output.valid,
        report_file=snakemake.output.report,
        policy=settings["policy"],
        n=settings["ngram"],
    )
