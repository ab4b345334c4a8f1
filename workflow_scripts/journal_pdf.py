"""Print results/journal/journal.html to journal.pdf with WeasyPrint."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.journal import write_journal_pdf

    write_journal_pdf(snakemake.input.html, snakemake.output.pdf)
