"""Glue for workflow_scripts/: logging to the rule's log file, and errors without tracebacks.

A workflow script is a few lines::

    from ftmatrix.workflow import run_step
    from ftmatrix.data import prepare_task

    with run_step(snakemake):
        prepare_task(...)

A user-facing error (FtmatrixError) is printed as one clear message to the terminal
and the log, and the job fails; any other exception keeps its traceback in the log.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import time
import traceback
from contextlib import contextmanager

from ftmatrix.errors import FtmatrixError

log = logging.getLogger("ftmatrix")


def machine_has_gpu(environ=None, device_files=None) -> bool:
    """Whether jobs started on this machine will see a CUDA device (NVIDIA, or AMD through ROCm).

    Decided from the device files and ``CUDA_VISIBLE_DEVICES`` alone: the workflow must not
    import torch (every job parses it again). ``CUDA_VISIBLE_DEVICES`` set to nothing or -1
    hides every GPU from torch.
    """
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    if device_files is None:
        device_files = glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/kfd")
    return bool(device_files)


def setup_logging(log_file: str | None = None, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w", encoding="utf-8"))
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        handlers=handlers, force=True)
    # The libraries are chatty at INFO; keep their warnings.
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def run_step(snakemake=None, name: str | None = None):
    log_file = None
    if snakemake is not None and len(snakemake.log) > 0:
        log_file = str(snakemake.log[0])
    name = name or (snakemake.rule if snakemake is not None else "ftmatrix")
    setup_logging(log_file)
    started = time.perf_counter()
    try:
        yield log
    except FtmatrixError as exc:
        log.error("%s", exc)
        print(f"\nftmatrix: {name} failed: {exc}\n", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception:
        log.error("unexpected error in %s:\n%s", name, traceback.format_exc())
        raise
    log.info("%s done in %.1f s", name, time.perf_counter() - started)
