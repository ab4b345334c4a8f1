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
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from ftmatrix.errors import FtmatrixError

log = logging.getLogger("ftmatrix")


def source_sha256(*modules: str, extra: tuple[str | Path, ...] = ()) -> str:
    """sha256 of the named ``ftmatrix`` modules' source (and ``extra`` files): a param of the
    stages that compute from results alone and cost seconds (the matrix, the analysis, figures,
    the journal), so a change in their code redoes them. Trainings and generations are never
    keyed on code: they rerun only when their settings or inputs change."""
    import hashlib

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in [package / f"{name}.py" for name in modules] + [Path(p) for p in extra]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def visible_gpus(environ=None, device_files=None) -> list[str]:
    """The CUDA devices (NVIDIA, or AMD through ROCm) a job started here will see, as the ids
    ``CUDA_VISIBLE_DEVICES`` takes.

    Decided from the device files and ``CUDA_VISIBLE_DEVICES`` alone: the workflow must not
    import torch (every job parses it again). ``CUDA_VISIBLE_DEVICES`` set to nothing or -1
    hides every GPU; set to a list, it is the list.
    """
    environ = os.environ if environ is None else environ
    if device_files is None:
        device_files = glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/kfd")
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [part.strip() for part in visible.split(",") if part.strip()]
        if not ids or ids[0] == "-1":
            return []
        return ids if device_files else []
    nvidia = sorted(f for f in device_files if f.startswith("/dev/nvidia"))
    return [str(i) for i in range(len(nvidia))] or (["0"] if device_files else [])


def machine_has_gpu(environ=None, device_files=None) -> bool:
    """Whether jobs started on this machine will see a CUDA device."""
    return bool(visible_gpus(environ, device_files))


def job_threads(params_b: float) -> int:
    """Threads of a training or evaluation job: one for a model of a few million parameters
    (more threads only wait on each other, and shared cores make them spin), which also lets
    Snakemake run several such jobs side by side; four for real models."""
    return 1 if params_b < 0.05 else 4


def declared_size_warning(name: str, params_b: float, manifest_file: str | Path, factor: float = 2.0) -> str | None:
    """A sentence when a model's declared ``params_b`` is more than ``factor`` times off the
    parameter count in its manifest (None when it is close, or the manifest is not there yet)."""
    from ftmatrix.records import ModelManifest

    if not Path(manifest_file).is_file():
        return None
    try:
        params = ModelManifest.read(manifest_file).params
    except FtmatrixError:
        return None        # the jobs that read it say what is wrong with it
    if params <= 0:
        return None
    actual_b = params / 1e9
    ratio = params_b / actual_b
    if 1 / factor <= ratio <= factor:
        return None
    return (f"models entry {name!r} declares params_b: {params_b:g}, but {manifest_file} counts "
            f"{params:,} parameters ({actual_b:.3g} B, {ratio:.3g}x off). Memory and time requests are "
            f"sized from params_b; set it to {actual_b:.3g}.")


# Set inside a job of a batch scheduler, which hands out the GPUs itself.
SCHEDULER_JOB_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID")

# Held open for the life of the job: the lock on its GPU is released when the process ends,
# however it ends (a killed job frees its GPU; nothing stale is left behind).
_gpu_lock = None


def claim_gpu(lock_dir: str | Path | None = None, environ=None, device_files=None, poll_s: float = 2.0):
    """Give this job a GPU of its own, before torch is imported: take the first of the visible
    GPUs that no other job on this machine holds (an exclusive ``flock`` on
    ``<lock_dir>/gpu-<id>.lock``) and narrow ``CUDA_VISIBLE_DEVICES`` to it.

    With Snakemake's global ``gpu`` limit set to the number of GPUs (``--resources gpu=4``),
    at most that many GPU jobs run at once, so one is always free; a job that finds every GPU
    held (another study on the same machine) waits for one. Returns the GPU id, or None where
    the machine has no GPU.
    """
    global _gpu_lock
    import fcntl

    environ = os.environ if environ is None else environ
    if any(environ.get(var) for var in SCHEDULER_JOB_VARS):
        return None     # a batch scheduler gave this job its GPUs (and may number them from 0 in every job)
    ids = visible_gpus(environ, device_files)
    if not ids:
        return None
    folder = Path(lock_dir) if lock_dir else Path(tempfile.gettempdir()) / f"ftmatrix-gpu-locks-{os.getuid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("cannot keep GPU locks in %s (%s); this job uses the GPUs it sees (%s) without one: "
                    "set TMPDIR to a writable folder, or keep --resources gpu=1", folder, exc, ", ".join(ids))
        return None
    waited = False
    while True:
        for gpu in ids:
            handle = open(folder / f"gpu-{gpu.replace('/', '_')}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            _gpu_lock = handle
            environ["CUDA_VISIBLE_DEVICES"] = gpu
            log.info("using GPU %s (CUDA_VISIBLE_DEVICES=%s; locks in %s)", gpu, gpu, folder)
            return gpu
        if not waited:
            log.warning("every GPU (%s) is held by another job on this machine; waiting for one "
                        "(locks in %s)", ", ".join(ids), folder)
            waited = True
        time.sleep(poll_s)


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
    warm_note = None
    if snakemake is not None and os.environ.get("FTMATRIX_WARM_SOCKET"):
        # Warm start (ftmatrix/warm.py): a child of the warm server runs this script and this
        # process exits with its status; None runs it here, as always.
        from ftmatrix.warm import delegate

        status, warm_note = delegate(snakemake)
        if status is not None:
            sys.exit(status)
    setup_logging(log_file)
    if warm_note:
        log.info("%s", warm_note)
    elif os.environ.get("FTMATRIX_WARM_FORKED"):
        log.info("warm start: this job runs in a process forked from the warm server (%s)",
                 os.environ["FTMATRIX_WARM_FORKED"])
    started = time.perf_counter()
    try:
        # Task kinds resolve with the study's own task_modules folders too, in every job.
        from ftmatrix.tasks import use_config

        use_config(getattr(snakemake, "config", None))
        # A job that counts against the machine's `gpu` limit gets a GPU of its own (on a
        # cluster the scheduler does this: such jobs declare gpu=0 and get their GPU from SLURM).
        if snakemake is not None and int(snakemake.resources.get("gpu", 0) or 0) > 0:
            claim_gpu()
        yield log
    except FtmatrixError as exc:
        log.error("%s", exc)
        print(f"\nftmatrix: {name} failed: {exc}\n", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception:
        log.error("unexpected error in %s:\n%s", name, traceback.format_exc())
        raise
    log.info("%s done in %.1f s", name, time.perf_counter() - started)
