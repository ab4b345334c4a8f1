"""What produced a result: code version, library versions, machine. Recorded in every result file."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess

from ftmatrix.config import PROJECT_ROOT

# The installed libraries whose behaviour decides scores: math-verify reads and compares maths
# answers (metrics.math_equal) through latex2sympy2_extended's LaTeX parser and sympy.
# Their versions are a param of rule score_cell (ftmatrix.tasks.grading_libraries).
GRADING_LIBRARIES = ("math-verify", "latex2sympy2_extended", "sympy")
LIBRARIES = ("ftmatrix", "torch", "transformers", "trl", "peft", "datasets", "accelerate",
             "tokenizers", "safetensors", "huggingface_hub", "snakemake", "numpy") + GRADING_LIBRARIES


@functools.lru_cache(maxsize=None)
def git_state(root: str = str(PROJECT_ROOT)) -> dict:
    """{'commit': sha or None, 'dirty': bool or None} of the project checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def library_versions(names=LIBRARIES) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict:
    """The device torch would use; imports torch lazily (only jobs that already use it call this)."""
    info = {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    try:
        import torch
    except ImportError:
        return info
    info["torch_threads"] = torch.get_num_threads()
    # The instruction set torch's CPU kernels run with (AVX512, AVX2, …): floating-point sums
    # differ between them, so a model trained on one CPU is not bit-identical to one trained on
    # another, and tiny models can answer differently.
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if torch.cuda.is_available():
        info["device"] = "cuda"
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
    else:
        info["device"] = "cpu"
        info["gpu"] = None
    return info


def record(config_hash: str | None = None, **extra) -> dict:
    """The provenance block written into result files."""
    state = git_state()
    block = {"git_commit": state["commit"], "git_dirty": state["dirty"], "config_hash": config_hash,
             "libraries": library_versions()}
    block.update(extra)
    return block
