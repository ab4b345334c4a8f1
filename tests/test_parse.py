"""Parsing the workflow stays cheap: every cluster job parses it again, so the Snakefile and
rules/*.smk must not import torch, transformers, trl, peft or datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")

# Runs Snakemake's command line in this interpreter and, at exit, reports what the run
# left behind: which heavy packages were imported and the HF_HOME it set.
PROBE = textwrap.dedent(
    """
    import atexit, json, os, sys

    HEAVY = set(json.loads(os.environ["PROBE_HEAVY"]))

    def report():
        loaded = sorted({name.split(".")[0] for name in sys.modules} & HEAVY)
        print("PROBE=" + json.dumps({"heavy": loaded, "hf_home": os.environ.get("HF_HOME")}),
              file=sys.stderr, flush=True)

    atexit.register(report)
    from snakemake.cli import main
    main(sys.argv[1:])
    """
)


def probe_snakemake(args: list[str], workdir: Path, env: dict | None = None) -> dict:
    """Run ``snakemake <args>`` on the project's Snakefile in ``workdir``; return the probe's report."""
    full_env = {**os.environ, "PROBE_HEAVY": json.dumps(HEAVY), **(env or {})}
    full_env.pop("HF_HOME", None)
    cmd = [sys.executable, "-c", PROBE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, cwd=workdir, env=full_env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake {' '.join(args)} failed:\n{output[-4000:]}"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("PROBE=")]
    assert lines, f"the probe did not report:\n{output[-2000:]}"
    report = json.loads(lines[-1][len("PROBE="):])
    report["output"] = output
    return report


@pytest.mark.parametrize("study", [None, "studies/demo.yaml"], ids=["reference", "demo"])
def test_dry_run_imports_no_heavy_library(tmp_path, study):
    args = ["-n", "--cores", "1"] + (["--configfile", str(ROOT / study)] if study else [])
    report = probe_snakemake(args, tmp_path)
    assert "This was a dry-run" in report["output"]
    assert report["heavy"] == [], (
        f"parsing the workflow imported {report['heavy']}; keep such imports inside the "
        f"functions of ftmatrix/ that the workflow scripts call")


def test_listing_rules_imports_no_heavy_library(tmp_path):
    report = probe_snakemake(["--list-rules"], tmp_path)
    assert "train_variant" in report["output"] and "evaluate_cell" in report["output"]
    assert report["heavy"] == []


def test_the_bench_compares_against_a_bare_workflow_with_as_many_jobs(tmp_path):
    """bench/dag_scale.py is only fair if its bare workflow has ftmatrix's jobs."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import dag_scale
    finally:
        sys.path.remove(str(ROOT / "bench"))
    import ftmatrix.config
    import ftmatrix.grid

    study = tmp_path / "grid.yaml"
    import yaml

    study.write_text(yaml.safe_dump(dag_scale.grid_study(100, n_tasks=3, n_tuned=2, n_ranks=2)))
    config = ftmatrix.config.load(ROOT / "config.yaml", [study])
    bare = tmp_path / "bare"
    work = tmp_path / "work"
    bare.mkdir()
    work.mkdir()
    (bare / "Snakefile").write_text(dag_scale.trivial_workflow(config))
    _, ftm_jobs, _, _ = dag_scale.dry_run(ROOT / "Snakefile", work, study, ["results/dag-scale/matrix.csv"])
    _, bare_jobs, _, _ = dag_scale.dry_run(bare / "Snakefile", bare, None, ["results/matrix.txt"])
    cells = len(ftmatrix.grid.cells(config))
    assert cells > 100
    assert ftm_jobs == bare_jobs > 2 * cells
