"""Write the seeded demo world: tasks in the hub schemas and a pretraining corpus."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.demo_world import write_world

    write_world(Path(snakemake.output.world).parent, seed=int(snakemake.wildcards.world_seed))
