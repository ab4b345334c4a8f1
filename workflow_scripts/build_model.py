"""Build a tiny Qwen3 (tokenizer + config + brief pretraining) into data/models/{model}/."""
from pathlib import Path

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.models import build_model

    build_model(
        snakemake.params.model,
        Path(snakemake.output.manifest).parent,
        corpus=snakemake.input.get("world") or snakemake.input.get("corpus"),
        threads=snakemake.threads,
        root=Path(snakemake.scriptdir).parent,
    )
