"""Write the seeded demo world: tasks in the hub schemas and a pretraining corpus."""
from pathlib import Path

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.demo_world import write_world

    write_world(Path(snakemake.output.world).parent, seed=int(snakemake.wildcards.world_seed))
