"""Re-scoring a finished study from its saved generations: `--forcerun score_cell` applies the
scorers of this version (both readings, the format rate) and generates nothing again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ftmatrix import io

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
GENERATING_RULES = ("evaluate_cell", "time_round", "train_variant", "build_model", "prepare_task")


@pytest.mark.slow
def test_forcerun_score_cell_rescores_from_saved_generations(demo_run, tmp_path):
    # A copy (times and Snakemake's records kept), so the shared demo stays as it was.
    work = tmp_path / "project"
    shutil.copytree(demo_run["root"], work, symlinks=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    # The target first: --forcerun and --configfile take every word after them up to the next option.
    command = [SNAKEMAKE, "results/demo/matrix.csv", "--cores", "2", "--forcerun", "score_cell",
               "--configfile", "studies/demo.yaml"]
    dry = subprocess.run([*command, "-n"], cwd=work, capture_output=True, text=True, timeout=600, env=env)
    plan = dry.stdout + dry.stderr
    assert dry.returncode == 0, plan[-3000:]
    assert "rule score_cell:" in plan and "rule aggregate_matrix:" in plan
    assert not [rule for rule in GENERATING_RULES if f"rule {rule}:" in plan], plan[-3000:]

    generations = sorted((work / "results" / "demo" / "eval").rglob("generations.jsonl"))
    assert generations
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in generations}
    run = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=1800, env=env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in generations} == before
    for path in generations:
        predictions = io.read_jsonl(path.with_name("predictions.jsonl"))
        assert all({"lenient", "strict", "follows_format"} <= set(p) for p in predictions), path
    import pandas as pd

    matrix = pd.read_csv(work / "results" / "demo" / "matrix.csv")
    assert set(matrix["grading"]) == {"lenient"}
    assert matrix["headline"].equals(matrix["headline_lenient"])
    assert matrix["headline_strict"].notna().all() and matrix["format_rate"].between(0, 100).all()
