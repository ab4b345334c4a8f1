"""results/matrix.csv: one row per cell, stable order, costs, provenance, clear errors."""

from __future__ import annotations

import csv
import json

import pytest

from ftmatrix import grid
from ftmatrix.aggregate import (aggregate_matrix, column_group, device_kind, quality_columns, read_matrix,
                                timing_columns)
from ftmatrix.errors import DataError, FtmatrixError
from tests.test_aggregate_tree import aggregate, study_config, tree, write_results_tree  # noqa: F401


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_one_row_per_cell_in_grid_order(tree):
    rows = read_rows(aggregate(tree))
    cells = sorted(grid.cells(tree.config))
    assert [r["cell"] for r in rows] == [c.path for c in cells]
    first = rows[0]
    assert (first["model"], first["method"], first["rank"], first["train_task"], first["seed"]) == \
        ("demo-large", "base", "0", "none", "0")


def test_columns_carry_what_the_reader_needs(tree):
    rows = read_rows(aggregate(tree))
    header = list(rows[0])
    for column in ["model", "method", "rank", "train_task", "seed", "eval_task", "n", "headline_metric",
                   "headline", "headline_ci_low", "headline_ci_high", "latency_mean_s", "latency_median_s",
                   "latency_p95_s", "ttft_mean_s", "output_tokens_mean", "train_wall_time_s",
                   "trainable_params", "train_peak_memory_mb", "cost_per_1k_usd", "git_commit", "git_dirty",
                   "config_hash", "eval_data_fingerprint", "model_revision", "enable_thinking"]:
        assert column in header, column
    assert all(column_group(c) != "unknown" for c in header)
    # every metric of a task has its column; other tasks leave it empty
    arc = next(r for r in rows if r["eval_task"] == "arc")
    squad = next(r for r in rows if r["eval_task"] == "squad_v2")
    assert arc["metric_accuracy"] and not arc["metric_f1"]
    assert squad["metric_f1"] and not squad["metric_accuracy"]
    metrics = json.loads((tree.root / "results" / "eval" / arc["cell"] / "metrics.json").read_text())
    assert float(arc["headline"]) == metrics["headline"]["value"]
    assert arc["eval_data_fingerprint"] == "evarc0123456789"
    assert arc["model_revision"].startswith("sha-")


def test_training_columns_only_for_trained_cells(tree):
    rows = read_rows(aggregate(tree))
    base = next(r for r in rows if r["method"] == "base")
    lora = next(r for r in rows if r["method"] == "lora")
    assert base["train_wall_time_s"] == "" and base["trainable_params"] == ""
    assert int(lora["trainable_params"]) == int(lora["rank"]) * 2000
    assert float(lora["trainable_pct"]) == pytest.approx(100 * int(lora["rank"]) * 2000 / 1_000_000)
    assert lora["train_data_fingerprint"] == f"tr{lora['train_task'][:4]}0123456789"


def test_cost_uses_the_device_price_and_api_tokens(tmp_path):
    api = {"name": "some-api", "input_per_million_usd": 1.0, "output_per_million_usd": 4.0}
    tree = write_results_tree(tmp_path, study_config(api=api), device="cuda:0")
    cost = {"gpu_hour_usd": 3.6, "cpu_hour_usd": 0.36, "api": api}
    rows = read_rows(aggregate(tree, cost=cost))
    for row in rows:
        assert row["cost_device_kind"] == "gpu"
        assert float(row["cost_per_1k_usd"]) == pytest.approx(float(row["latency_mean_s"]) * 1000 / 3600 * 3.6)
        expected = 1000 * (float(row["input_tokens_mean"]) * 1.0 + float(row["output_tokens_mean"]) * 4.0) / 1e6
        assert float(row["api_cost_per_1k_usd"]) == pytest.approx(expected)
        assert row["api_name"] == "some-api"


def test_cpu_price_and_no_api_columns_without_api(tree):
    rows = read_rows(aggregate(tree, cost={"gpu_hour_usd": 2.5, "cpu_hour_usd": 0.1, "api": None}))
    assert "api_cost_per_1k_usd" not in rows[0]
    assert all(r["cost_device_kind"] == "cpu" for r in rows)
    row = rows[0]
    assert float(row["cost_per_1k_usd"]) == pytest.approx(float(row["latency_mean_s"]) / 3.6 * 0.1)
    assert device_kind("cuda") == device_kind({"device": "cuda", "gpu": "H200"}) == "gpu"
    assert device_kind("cpu") == device_kind(None) == "cpu"


def test_quality_columns_are_byte_identical_when_only_timing_differs(tmp_path):
    """Two runs that differ only in clock readings give the same quality columns, byte for byte."""
    tree = write_results_tree(tmp_path / "a", study_config())
    first = aggregate(tree, tmp_path / "one.csv")
    for path in tree.metrics:   # a second run: every latency and wall time changes
        data = json.loads(path.read_text())
        for key in ("mean_s", "median_s", "p95_s", "ttft_mean_s"):
            data["latency"][key] *= 1.37
        data["generation"]["wall_s"] += 0.5
        path.write_text(json.dumps(data))
    second = aggregate(tree, tmp_path / "two.csv")
    one, two = read_rows(first), read_rows(second)
    header = list(one[0])
    keep = quality_columns(header)
    assert "headline" in keep and "latency_mean_s" not in keep and "latency_mean_s" in timing_columns(header)

    def project(rows):
        return [[r[c] for c in keep] for r in rows]

    assert project(one) == project(two)
    assert [r["latency_mean_s"] for r in one] != [r["latency_mean_s"] for r in two]


def test_same_inputs_give_identical_bytes(tree, tmp_path):
    a = aggregate(tree, tmp_path / "a.csv").read_bytes()
    tree.metrics.reverse()
    b = aggregate(tree, tmp_path / "b.csv").read_bytes()
    assert a == b


def test_partial_grid_base_only(tmp_path):
    tree = write_results_tree(tmp_path, study_config(methods=("base",), tasks=("arc",)))
    frame = read_matrix(aggregate(tree))
    assert len(frame) == 2 and set(frame["method"]) == {"base"}


def test_missing_train_metrics_is_a_clear_error(tree):
    missing = tree.train_metrics.pop(0)
    with pytest.raises(DataError, match="train_metrics.json") as info:
        aggregate(tree)
    assert "snakemake" in str(info.value)
    assert not (tree.root / "results" / "matrix.csv").exists()
    assert missing.exists()


def test_incomplete_metrics_names_file_and_key(tree):
    path = tree.metrics[0]
    data = json.loads(path.read_text())
    del data["headline"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as info:
        aggregate(tree)
    assert str(path) in str(info.value) and "headline" in str(info.value)


def test_truncated_metrics_file(tree):
    path = tree.metrics[3]
    path.write_text(path.read_text()[:40])
    with pytest.raises(FtmatrixError, match="not valid JSON"):
        aggregate(tree)


def test_moved_metrics_file_is_caught(tree):
    path = tree.metrics[0]
    data = json.loads(path.read_text())
    data["cell"]["eval_task"] = "somewhere-else"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="rerun this cell's evaluation"):
        aggregate(tree)


def test_empty_grid_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no cells"):
        aggregate_matrix([], [], [], [], {}, tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


def test_read_matrix_refuses_a_foreign_csv(tmp_path):
    path = tmp_path / "matrix.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="aggregate_matrix"):
        read_matrix(path)


@pytest.mark.parametrize("kind, key", [("metrics", "latency"), ("train_metrics", "wall_time_s"),
                                       ("task_meta", "fingerprints"), ("manifests", "resolved_revision")])
def test_a_record_without_a_key_its_writer_produces_is_refused(tree, kind, key):
    """No reader falls back on another key: a record missing one names the file, the key and the fix."""
    path = getattr(tree, kind)[0]
    data = json.loads(path.read_text())
    del data[key]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as info:
        aggregate(tree)
    message = str(info.value)
    assert str(path) in message and repr(key) in message and f"--force {path}" in message
    assert not (tree.root / "results" / "matrix.csv").exists()


def test_every_cell_needs_its_model_manifest_and_task_meta(tree):
    tree.manifests.pop(0)
    with pytest.raises(DataError, match="no model manifest for 'demo-small'.*aggregate_matrix"):
        aggregate(tree)
