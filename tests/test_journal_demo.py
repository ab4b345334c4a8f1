"""The demo study end to end through Snakemake, in a copy of the project: the matrix, the analysis,
the figures and the journal come out; the findings show real learning; `snakemake --report` works.

Slow (the demo trains and evaluates every cell: minutes on two cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ftmatrix import config as cfg
from ftmatrix import grid

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(demo_run):
    return demo_run


def test_demo_writes_every_output_and_says_where_the_journal_is(demo):
    results = demo["root"] / "results" / "demo"
    for path in ("matrix.csv", "journal/journal.html", "journal/journal.pdf", "analysis/vs_base.csv",
                 "analysis/transfer.csv", "figures/transfer_heatmap.png", "figures/quality_vs_latency.svg"):
        assert (results / path).is_file(), path
    assert f"the journal is at {(results / 'journal' / 'journal.html').resolve()}" in demo["stdout"]
    matrix = pd.read_csv(results / "matrix.csv")
    assert len(matrix) == len(grid.cells(demo["config"]))


def test_demo_full_fine_tuning_learns_its_task(demo):
    """Full fine-tuning raises the trained task's headline over the base, with a CI excluding zero."""
    transfer = pd.read_csv(demo["root"] / "results" / "demo" / "analysis" / "transfer.csv")
    trained = transfer[(transfer["method"] == "full") & transfer["in_task"]]
    assert len(trained) == len(demo["config"]["tasks"])
    learnt = trained[trained["diff_ci_low"] > 0]
    assert (learnt["effect"] == "in-task gain").all()
    assert len(learnt) >= 1, trained[["train_task", "reference", "value", "diff", "diff_ci_low", "diff_ci_high"]]


@pytest.mark.parametrize("name", ["report.html", "report.zip"])
def test_snakemake_report_after_the_run(demo, name):
    run = subprocess.run([SNAKEMAKE, "--configfile", "studies/demo.yaml", "--report", name], cwd=demo["root"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    report = demo["root"] / name
    assert report.is_file() and report.stat().st_size > 50_000
    if name.endswith(".zip"):
        import zipfile

        names = zipfile.ZipFile(report).namelist()
        for wanted in ("matrix.csv", "journal.html", "journal.pdf", "transfer_heatmap.png", "vs_base.csv"):
            assert any(n.endswith(wanted) for n in names), wanted


def test_every_command_the_journal_prints_plans_the_study_it_describes(demo):
    """Copied into a shell at the project's root, each command acts on the demo study (its own
    folders), never on the reference study config.yaml describes."""
    import html as htmllib
    import re
    import shlex

    page = (demo["root"] / "results" / "demo" / "journal" / "journal.html").read_text()
    commands = [htmllib.unescape(c) for c in re.findall(r"<td><code>(snakemake [^<]*)</code></td>", page)]
    assert len(commands) >= 5, commands
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "snakemake"
        if "--report" in argv:
            run = subprocess.run([SNAKEMAKE, *argv[1:]], cwd=demo["root"], capture_output=True, text=True,
                                 timeout=900)
            assert run.returncode == 0, (command, run.stderr[-3000:])
            report = demo["root"] / argv[argv.index("--report") + 1]
            assert report.is_file() and "demo-small" in report.read_text(errors="replace")
            continue
        dry = [SNAKEMAKE, *[a for a in argv[1:] if a != "-n"], "-n"]
        run = subprocess.run(dry, cwd=demo["root"], capture_output=True, text=True, timeout=300)
        text = run.stdout + run.stderr
        assert run.returncode == 0, (command, text[-3000:])
        assert "qwen3" not in text.lower(), f"{command!r} plans the reference study"
        if "--forcerun" in argv:
            rule = argv[argv.index("--forcerun") + 1]
            assert f"rule {rule}:" in text and "results/demo/" in text, (command, text[-3000:])
            assert "train_variant" not in text
        else:
            assert "Nothing to be done" in text, (command, text[-3000:])


def test_demo_sweeps_select_one_run_per_variant_and_evaluate_it(demo):
    """OpenMath's three rates per method are all trained; each variant's selection is the run with
    the lowest validation loss, and the matrix's cells carry that run's learning rate."""
    from ftmatrix.selection import LrSelection, read_sweep_table

    results = demo["root"] / "results" / "demo"
    sweep = read_sweep_table(results / "analysis" / "lr_sweep.csv")
    assert len(sweep) == len(grid.runs(demo["config"]))
    openmath = sweep[sweep["train_task"] == "openmath"]
    assert set(openmath.groupby(["method", "rank"])["lr"].nunique()) == {3}
    matrix = pd.read_csv(results / "matrix.csv")
    for variant in grid.trained_variants(demo["config"]):
        selection = LrSelection.read(results / "train" / variant.path / "selection.json")
        finite_runs = [r for r in selection.runs if r["valid_loss_after"] == r["valid_loss_after"]]
        assert selection.selected == min(finite_runs, key=lambda r: r["valid_loss_after"])["lr"]
        rows = matrix[(matrix["model"] == variant.model) & (matrix["method"] == variant.method)
                      & (matrix["rank"] == variant.rank) & (matrix["train_task"] == variant.train_task)
                      & (matrix["seed"] == variant.seed)]
        assert len(rows) == len(demo["config"]["tasks"])
        assert (rows["learning_rate"] == selection.selected_learning_rate).all()
    # One training seed: every comparison rests on one run a variant, and the journal says so
    # rather than showing a spread; the setup names where each task's rates come from.
    transfer = pd.read_csv(results / "analysis" / "transfer.csv")
    assert (transfer["n_seeds"] == 1).all()
    page = (results / "journal" / "journal.html").read_text()
    seeds_section = page[page.index('<h2>Seeds</h2>'):page.index('<h2>Practical takeaways</h2>')]
    assert "n/a: one training seed" in seeds_section
    assert "openmath: full 0.001 / 0.003 / 0.01" in page
