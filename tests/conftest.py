"""Shared test setup: offline hub, the real data in ../shared/data, tiny models."""

import os
from pathlib import Path

import pytest

# Nothing in the tests may reach the hub: a missing local file must fail at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("WANDB_DISABLED", "true")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FTMATRIX_SHARED_DATA", ROOT.parent / "shared" / "data"))


# What a copy of the project leaves out: the environment, git, and everything a run produces
# (at the top level only: ftmatrix/tasks/ is code, data/<study>/tasks/ is output).
PRODUCED = {".venv", ".venv-vllm", ".git", ".snakemake", "results", "logs", "benchmarks", "data", ".pytest_cache",
            ".hypothesis"}


def _ignore_produced(folder, names):
    top = Path(folder).resolve() == ROOT
    return [n for n in names if (top and n in PRODUCED) or n == "__pycache__" or n.endswith(".egg-info")]


def copy_project(dest: Path) -> Path:
    """A fresh copy of the project's code and studies, with none of its outputs."""
    import shutil

    shutil.copytree(ROOT, dest, ignore=_ignore_produced)
    return dest


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_data: reads the real data in ../shared/data")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data (ARC, SQuAD v2, OpenMathInstruct-2, Qwen3 tokenizer); skip where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it ships beside the project in CI); "
                    f"set FTMATRIX_SHARED_DATA to its location to run this test")
    return SHARED_DATA


@pytest.fixture(scope="session")
def qwen_tokenizer_dir(shared_data) -> Path:
    path = shared_data / "qwen3-tokenizer"
    if not (path / "tokenizer_config.json").is_file():
        pytest.skip(f"the Qwen3 tokenizer is absent from {path}")
    return path


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory, qwen_tokenizer_dir) -> Path:
    """A randomly initialised tiny Qwen3 (real architecture) with the real Qwen3 tokenizer, saved as safetensors."""
    from tests.helpers import make_tiny_qwen3

    return make_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"), qwen_tokenizer_dir)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo study run once, end to end, by Snakemake in a copy of the project (minutes).

    Shared by every test that reads the demo's outputs (models, training metrics, matrix,
    analysis, journal), so the session pays for one run.
    """
    import subprocess
    import sys
    import time

    from ftmatrix import config as cfg

    work = tmp_path_factory.mktemp("demo") / "project"
    copy_project(work)
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    started = time.perf_counter()
    run = subprocess.run([snakemake, "--cores", "2", "--configfile", "studies/demo.yaml"], cwd=work,
                         capture_output=True, text=True, timeout=3600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    elapsed = time.perf_counter() - started
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return {"root": work, "stdout": run.stdout + run.stderr, "seconds": elapsed,
            "config": cfg.load(work / "config.yaml", [work / "studies" / "demo.yaml"])}
