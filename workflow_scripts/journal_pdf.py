"""Print results/journal/journal.html to journal.pdf with WeasyPrint."""
from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.journal import write_journal_pdf

    write_journal_pdf(snakemake.input.html, snakemake.output.pdf)
