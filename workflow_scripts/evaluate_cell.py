"""Generate greedily for one cell, timing each sample; resumes from samples already written."""
from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.evaluate import evaluate_cell

    evaluate_cell(
        snakemake.params.settings,
        model_manifest=snakemake.input.model,
        trained_dir=snakemake.input.get("trained"),
        eval_file=snakemake.input.eval,
        generations_file=snakemake.output.generations,
        info_file=snakemake.output.info,
        config_hash=snakemake.params.config_hash,
        threads=snakemake.threads,
    )
