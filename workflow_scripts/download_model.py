"""Download a hub model at its pinned revision (safetensors only) into data/<study>/models/{model}/."""
import os
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
        # Set from the config's hf_home (resolved) when the workflow was parsed; not a param,
        # so pointing a finished study at a shared cache reruns nothing.
        hf_home=os.environ["HF_HOME"] if snakemake.config["hf_home"] else None,
    )
