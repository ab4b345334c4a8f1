"""Download a hub model at its pinned revision (safetensors only) into data/models/{model}/."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.models import download_model

    download_model(
        snakemake.params.model,
        Path(snakemake.output.manifest).parent,
        hf_home=snakemake.params.hf_home,
    )
