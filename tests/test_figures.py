"""Figures: every figure as PNG and SVG for full and partial grids; the Pareto front; the rules name them all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ftmatrix.analysis import TABLES, analyse_matrix
from ftmatrix.figures import FIGURES, FORMATS, _pareto, draw_figures
from tests.test_aggregate_tree import aggregate, mean_score_statistic, study_config, write_results_tree, write_sweeps

ROOT = Path(__file__).resolve().parents[1]


def figures_for(root: Path, config: dict) -> dict:
    tree = write_results_tree(root, config)
    matrix = aggregate(tree)
    analyse_matrix(matrix, tree.predictions, root / "analysis", resamples=100, seed=0, confidence=0.95,
                   statistic_for=mean_score_statistic)
    write_sweeps(tree, root / "analysis")
    return draw_figures(matrix, root / "analysis", root / "figures")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_every_figure_in_both_formats(tmp_path):
    out = figures_for(tmp_path, study_config(tasks=("arc", "squad_v2"), ranks=(4, 16, 64)))
    assert set(out) == set(FIGURES)
    for name, paths in out.items():
        assert [p.suffix[1:] for p in paths] == list(FORMATS)
        width, height = png_size(paths[0])
        assert width > 300 and height > 150, name
        svg = paths[1].read_text(encoding="utf-8")
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        # the figure carries its data: task names appear as text in the SVG
        assert "arc" in svg, name


def test_partial_grids_still_give_every_figure(tmp_path):
    for name, config in {"base_only": study_config(methods=("base",), tasks=("arc",)),
                         "no_lora": study_config(methods=("base", "full"), models=("demo-small",), tasks=("arc",)),
                         "no_base": study_config(methods=("full", "lora"), models=("demo-small",), tasks=("arc",),
                                                 ranks=(8,))}.items():
        out = figures_for(tmp_path / name, config)
        for paths in out.values():
            assert all(p.is_file() and p.stat().st_size > 1000 for p in paths), name
    svg = (tmp_path / "base_only" / "figures" / "lora_rank.svg").read_text()
    assert "n/a" in svg


def test_same_data_same_svg(tmp_path):
    config = study_config(tasks=("arc",), ranks=(4, 16))
    a = figures_for(tmp_path / "a", config)
    b = figures_for(tmp_path / "b", config)
    for name in FIGURES:
        assert a[name][1].read_bytes() == b[name][1].read_bytes(), name


def test_pareto_front():
    # (latency, quality, higher is better)
    points = [(1.0, 50, True), (2.0, 60, True), (3.0, 55, True), (0.5, 10, True), (2.0, 40, True)]
    assert _pareto(points) == [0, 1, 3]
    # lower-is-better metric: the front flips
    assert _pareto([(1.0, 5, False), (2.0, 1, False), (3.0, 2, False)]) == [0, 1]


def test_rules_name_every_table_figure_and_caption():
    text = (ROOT / "rules" / "aggregate.smk").read_text()
    block = re.search(r"ANALYSIS_TABLES = \[(.*?)\]", text, re.S).group(1)
    assert re.findall(r'"(\w+)"', block) == list(TABLES)
    block = re.search(r"FIGURES = \[(.*?)\]", text, re.S).group(1)
    assert re.findall(r'"(\w+)"', block) == list(FIGURES)
    captions = ROOT / "report" / "captions"
    for name in TABLES:
        assert (captions / f"{name}.rst").is_file(), name
    for name in FIGURES:
        assert (captions / f"figure_{name}.rst").is_file(), name
    for name in ("matrix", "journal", "journal_pdf"):
        assert (captions / f"{name}.rst").is_file(), name


@pytest.mark.parametrize("module", ["ftmatrix.aggregate", "ftmatrix.analysis", "ftmatrix.figures",
                                    "ftmatrix.journal"])
def test_report_modules_do_not_import_torch(module):
    import subprocess
    import sys

    code = f"import sys, {module}; print(any(m in sys.modules for m in ('torch', 'transformers', 'trl', 'peft')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_the_heatmap_marks_a_verdict_the_right_answers_decided():
    """A starred cell reads as "significant this way"; a cell whose verdict followed the task's
    correctness metric against its headline's sign (macro-F1 +7.5, accuracy significantly down:
    forgetting) is marked † instead, and the colour bar says what † means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from ftmatrix.figures import transfer_heatmap

    def row(train_task, eval_task, diff, significance, check=None):
        out = {"model": "small", "method": "full", "rank": 0, "train_task": train_task, "eval_task": eval_task,
               "in_task": train_task == eval_task, "diff": diff, "significance": significance,
               "headline_metric": "macro_f1", "verdict_metric": "macro_f1"}
        if check:
            out.update({"check_metric": "accuracy", "check_diff": check[0], "check_significance": check[1],
                        "verdict_metric": check[2]})
        return out

    # The verdict followed accuracy in the second row only (the analysis's verdict_metric says so).
    transfer = pd.DataFrame([row("a", "a", 30.0, "better", (25.0, "better", "macro_f1")),
                             row("b", "a", 7.5, "worse", (-5.0, "worse", "accuracy")),
                             row("a", "b", -20.0, "worse"),
                             row("b", "b", 2.0, "no significant change")])
    fig = transfer_heatmap(plt, None, {"transfer": transfer})
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert {"+30.0*", "+7.5†", "-20.0*", "+2.0"} <= texts
    assert any("† = right answers went the other way" in ax.get_ylabel() for ax in fig.axes)
    plt.close(fig)
    fig = transfer_heatmap(plt, None, {"transfer": transfer.drop(index=1)})
    assert not any("†" in ax.get_ylabel() for ax in fig.axes)
    plt.close(fig)
