"""ftmatrix: does a small model, fine-tuned locally, match a bigger base model?

Importing the package is cheap (no torch, transformers or datasets at import time),
because Snakemake parses the workflow, which imports ftmatrix.config and
ftmatrix.grid, once for every job.
"""

__version__ = "0.1.0"
