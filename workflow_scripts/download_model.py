"""Download a hub model at its pinned revision (safetensors only) into data/models/{model}/."""
from pathlib import Path

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.models import download_model

    download_model(
        snakemake.params.model,
        Path(snakemake.output.manifest).parent,
        hf_home=snakemake.params.hf_home,
    )
