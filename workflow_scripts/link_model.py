"""Check a local model folder (safetensors weights, tokenizer) and record it in a manifest."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.models import link_model

    link_model(
        snakemake.params.model,
        Path(snakemake.output.manifest).parent,
        root=Path(snakemake.scriptdir).parent,
    )
