"""Build a tiny Qwen3 (tokenizer + config + brief pretraining) into data/<study>/models/{model}/."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

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
