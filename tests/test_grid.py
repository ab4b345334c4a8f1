"""The grid: config -> valid variants and cells; paths -> cells."""

import subprocess
import sys

import pytest

from ftmatrix import config as cfg
from ftmatrix import grid

ROOT = cfg.PROJECT_ROOT


@pytest.fixture(scope="module")
def reference():
    return cfg.load(ROOT / "config.yaml")


def test_reference_study_counts(reference):
    variants = grid.variants(reference)
    by_method = {m: sum(v.method == m for v in variants) for m in grid.METHODS}
    assert by_method == {"base": 2, "full": 3, "lora": 18}
    assert len(variants) == 23
    assert len(grid.cells(reference)) == 69
    assert len(grid.trained_variants(reference)) == 21


def test_no_cartesian_junk(reference):
    for v in grid.variants(reference):
        if v.method == "base":
            assert (v.rank, v.train_task, v.seed) == (0, grid.NO_TASK, 0)
        elif v.method == "full":
            assert v.rank == 0 and v.train_task != grid.NO_TASK
        else:
            assert v.rank in reference["lora"]["ranks"]
    # the base-only 1.7B model is never fine-tuned
    assert {v.method for v in grid.variants(reference) if v.model == "qwen3-1.7b"} == {"base"}


def test_seeds_multiply_trained_variants_only(reference):
    config = dict(reference, seeds=[0, 1, 2])
    variants = grid.variants(config)
    assert sum(v.method == "base" for v in variants) == 2
    assert sum(v.is_trained for v in variants) == 21 * 3


def test_methods_subset(reference):
    config = dict(reference, methods=["base", "full"])
    assert len(grid.variants(config)) == 2 + 3


def test_paths_round_trip(reference):
    for cell in grid.cells(reference):
        path = f"results/eval/{cell.path}/metrics.json"
        assert grid.cell_from_path(path) == cell
        assert grid.variant_from_path(f"results/train/{cell.variant.path}/model") == cell.variant


def test_bad_path_is_refused():
    with pytest.raises(ValueError, match="does not contain a cell path"):
        grid.cell_from_path("results/eval/qwen/base/none/metrics.json")


def test_invalid_variants_cannot_be_made():
    with pytest.raises(ValueError):
        grid.Variant("m", "base", rank=8)
    with pytest.raises(ValueError):
        grid.Variant("m", "full", rank=8, train_task="arc")
    with pytest.raises(ValueError):
        grid.Variant("m", "lora", rank=0, train_task="arc")
    with pytest.raises(ValueError):
        grid.Variant("m", "lora", rank=4)


def test_columns_feed_expand_zip(reference):
    cells = grid.cells(reference)
    cols = grid.columns(cells)
    assert set(cols) == {"model", "method", "rank", "train_task", "seed", "eval_task"}
    assert all(len(v) == 69 for v in cols.values())
    rebuilt = [grid.CELL_PATTERN.format(**{k: cols[k][i] for k in cols}) for i in range(69)]
    assert rebuilt == [c.path for c in cells]


def test_wildcard_constraints_match_only_configured_names(reference):
    import re

    constraints = grid.wildcard_constraints(reference)
    assert re.fullmatch(constraints["model"], "qwen3-0.6b")
    assert not re.fullmatch(constraints["model"], "qwen3-0x6b")
    assert re.fullmatch(constraints["train_task"], "none")
    assert not re.fullmatch(constraints["eval_task"], "none")


def _dry_run_counts(*extra, cwd):
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(cwd),
                          "-n", "--cores", "1", *extra], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    counts = {}
    text = out.stdout
    table = text[text.index("Job stats"):]
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        if parts and parts[0] == "total":
            break
    return counts


def test_dry_run_reference_lists_expected_jobs(tmp_path):
    counts = _dry_run_counts("results/reference/matrix.csv", cwd=tmp_path)
    assert counts["download_model"] == 2
    assert counts["prepare_task"] == 3
    assert counts["train_variant"] == 63              # 21 variants × 3 learning rates
    assert counts["select_learning_rate"] == 21
    assert counts["evaluate_cell"] == 69
    assert counts["score_cell"] == 69


def test_dry_run_demo_lists_expected_jobs(tmp_path):
    demo = cfg.load(ROOT / "config.yaml", [ROOT / "studies" / "demo.yaml"])
    counts = _dry_run_counts("results/demo/matrix.csv", "--configfile", str(ROOT / "studies" / "demo.yaml"), cwd=tmp_path)
    assert counts["build_demo_world"] == 1
    assert counts["build_model"] == sum(m["source"] == "build" for m in demo["models"])
    assert counts["prepare_task"] == len(demo["tasks"])
    assert "download_model" not in counts
    assert counts["train_variant"] == len(grid.runs(demo))
    assert counts["select_learning_rate"] == len(grid.trained_variants(demo))
    assert counts["evaluate_cell"] + counts.get("evaluate_endpoint", 0) == len(grid.cells(demo))


def sweep_study(**train_rates):
    import yaml

    study = yaml.safe_load((ROOT / "studies" / "demo.yaml").read_text())
    for task in study["tasks"]:
        task.pop("learning_rate", None)
        task.pop("seeds", None)
    study["train"]["learning_rate"] = train_rates or {"full": [1e-3, 3e-3, 1e-2], "lora": [5e-3, 2e-2]}
    study["tasks"][1]["learning_rate"] = {"lora": 0.05}
    study["tasks"][1]["seeds"] = [0, 1]
    merged = cfg.read_yaml(ROOT / "config.yaml")
    cfg.merge(merged, study)
    return cfg.validate(merged)


def test_a_sweep_trains_every_rate_and_evaluates_one_run_per_variant():
    config = sweep_study()
    variants = grid.trained_variants(config)
    runs = grid.runs(config)
    ranks = len(config["lora"]["ranks"])
    # arc and squad_v2: full × 3 rates + LoRA × ranks × 2 rates; openmath (two seeds): full × 3, LoRA × ranks × 1
    assert len(runs) == 2 * (3 + ranks * 2) + 2 * (3 + ranks * 1)
    assert len(variants) == 2 * (1 + ranks) + 2 * (1 + ranks)
    assert len(grid.cells(config)) == len(grid.variants(config)) * len(config["tasks"])
    openmath_lora = [r for r in runs if r.variant.train_task == "openmath" and r.variant.method == "lora"]
    assert {r.learning_rate for r in openmath_lora} == {0.05}
    assert {r.variant.seed for r in openmath_lora} == {0, 1}
    for run in runs:
        assert grid.run_from_path(f"results/demo/train/{run.path}/model") == run
        assert grid.variant_from_path(run.path) == run.variant
        assert float(run.lr) == run.learning_rate and grid.lr_text(run.learning_rate) == run.lr


def test_learning_rates_in_paths_round_trip_exactly():
    for rate in (1e-5, 2e-4, 0.003, 1.5e-05, 0.1 + 0.2):
        assert float(grid.lr_text(rate)) == rate
        assert grid.run_from_path(f"m/full/r0/t/seed0/lr{grid.lr_text(rate)}/model").learning_rate == rate


def test_dry_run_of_a_sweep_selects_one_run_per_variant(tmp_path):
    import yaml

    config = sweep_study()
    study = tmp_path / "sweep.yaml"
    (study).write_text(yaml.safe_dump({k: config[k] for k in ("study", "models", "tasks", "train", "lora")}))
    counts = _dry_run_counts("results/demo/matrix.csv", "--configfile", str(ROOT / "studies" / "demo.yaml"),
                             str(study), cwd=tmp_path)
    assert counts["train_variant"] == len(grid.runs(config))
    assert counts["select_learning_rate"] == len(grid.trained_variants(config))
    assert counts["evaluate_cell"] + counts.get("evaluate_endpoint", 0) == len(grid.cells(config))
