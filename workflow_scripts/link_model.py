"""Check a local model folder (safetensors weights, tokenizer) and record it in a manifest."""
from pathlib import Path

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.models import link_model

    link_model(
        snakemake.params.model,
        Path(snakemake.output.manifest).parent,
        root=Path(snakemake.scriptdir).parent,
    )
