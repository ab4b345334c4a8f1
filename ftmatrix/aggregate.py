"""Every cell of the study in one table: results/matrix.csv.

One row per cell (variant × evaluation task), sorted by the grid's order, with a fixed
column order, so two runs on the same inputs give byte-identical quality columns.
Columns fall into groups (see ``COLUMN_GROUPS`` and docs/matrix-columns.md):

- identity and quality columns are deterministic;
- *timing* columns (``TIMING_COLUMNS``: latencies, wall times, throughput, memory, and the
  hardware cost derived from them) come from the clock and differ from run to run, so a
  reproducibility check compares ``quality_columns(header)`` only;
- provenance columns say what produced each row.

Costs: a cell's cost per 1,000 samples is its mean latency at batch size 1 (the
reference study's setting) times the hourly price of the device it ran on (``cost``
section of the config: GPU-hour for a CUDA/MPS/XPU device, CPU-hour otherwise); with
``cost.api`` set, an API's price for the same mean input and output tokens is given
beside it for comparison.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable

from ftmatrix.errors import DataError
from ftmatrix.grid import NO_TASK, Cell, cell_from_path, variant_from_path
from ftmatrix.numeric import finite
from ftmatrix.records import CellMetrics, ModelManifest, TaskMeta, TrainMetrics

IDENTITY_COLUMNS = ["model", "method", "rank", "train_task", "seed", "eval_task", "label", "cell",
                    "task_kind", "model_params"]
QUALITY_COLUMNS = ["n", "n_failed", "headline_metric", "headline", "headline_ci_low", "headline_ci_high",
                   "confidence", "higher_is_better", "grading",
                   "headline_lenient", "headline_lenient_ci_low", "headline_lenient_ci_high",
                   "headline_strict", "headline_strict_ci_low", "headline_strict_ci_high",
                   "format_rate", "format_rate_ci_low", "format_rate_ci_high"]
# metric_<name> columns (one per metric of any task, sorted) follow QUALITY_COLUMNS.
TOKEN_COLUMNS = ["output_tokens_mean", "output_tokens_ci_low", "output_tokens_ci_high", "input_tokens_mean",
                 "output_tokens_timed_mean", "hit_limit", "hit_limit_pct", "timed_mismatches"]
TIMING_COLUMNS = ["n_timed", "timing_rounds", "latency_mean_s", "latency_mean_ci_low", "latency_mean_ci_high",
                  "latency_median_s", "latency_round_medians_s", "latency_p95_s", "ttft_mean_s",
                  "ttft_mean_ci_low", "ttft_mean_ci_high", "ttft_median_s", "tpot_mean_s", "tpot_s", "tpot_ci_low",
                  "tpot_ci_high", "eval_wall_time_s", "eval_samples_per_s",
                  "train_wall_time_s", "train_tokens_per_s", "train_peak_memory_mb",
                  "cost_per_1k_usd", "cost_per_1k_batched_usd", "train_cost_usd"]
TRAINING_COLUMNS = ["trainable_params", "total_params", "trainable_pct", "train_steps", "train_epochs",
                    "train_tokens", "learning_rate", "train_final_loss", "heldout_loss_before",
                    "heldout_loss_after", "train_truncated_examples", "train_peak_memory_kind"]
COST_COLUMNS = ["cost_device_kind", "cost_hourly_usd"]
API_COLUMNS = ["api_name", "api_cost_per_1k_usd"]
PROVENANCE_COLUMNS = ["device", "engine", "timing_engine", "precision", "batch_size", "max_new_tokens",
                      "enable_thinking", "merge_lora", "model_revision", "eval_data_fingerprint",
                      "train_data_fingerprint", "git_commit", "git_dirty", "config_hash"]

COLUMN_GROUPS = {
    **{c: "identity" for c in IDENTITY_COLUMNS},
    **{c: "quality" for c in QUALITY_COLUMNS},
    **{c: "tokens" for c in TOKEN_COLUMNS},
    **{c: "timing" for c in TIMING_COLUMNS},
    **{c: "training" for c in TRAINING_COLUMNS},
    **{c: "cost" for c in COST_COLUMNS},
    **{c: "cost" for c in API_COLUMNS},
    **{c: "provenance" for c in PROVENANCE_COLUMNS},
}
METRIC_PREFIX = "metric_"

GPU_DEVICES = ("cuda", "mps", "xpu", "npu", "gpu")


def column_group(name: str) -> str:
    if name.startswith(METRIC_PREFIX):
        return "quality"
    return COLUMN_GROUPS.get(name, "unknown")


def timing_columns(header: Iterable[str]) -> list[str]:
    """The columns of ``header`` whose values come from the clock (exclude them to compare runs)."""
    return [c for c in header if column_group(c) == "timing"]


def quality_columns(header: Iterable[str]) -> list[str]:
    """The columns that two runs on the same inputs must reproduce byte for byte."""
    return [c for c in header if column_group(c) in ("identity", "quality", "tokens")]


def device_name(device) -> str | None:
    """A device as recorded ('cuda', 'cpu', or provenance's {'device': …, 'gpu': …}) as one string."""
    if isinstance(device, dict):
        name, gpu = device.get("device"), device.get("gpu")
        return f"{name} ({gpu})" if name and gpu else (name or gpu)
    return None if device is None else str(device)


def device_kind(device) -> str:
    """'gpu' for an accelerator (cuda, cuda:0, mps, …), 'cpu' otherwise."""
    name = str(device_name(device) or "cpu").lower()
    return "gpu" if name.startswith(GPU_DEVICES) else "cpu"


# ---------------------------------------------------------------------------- reading


def _check_cell(metrics: CellMetrics, path: Path) -> Cell:
    try:
        cell = cell_from_path(str(path))
    except ValueError:
        raise DataError(f"{path}: not inside a cell folder like "
                        f"results/<study>/eval/<model>/<method>/r<rank>/<train_task>/seed<seed>/<eval_task>/.") \
            from None
    for key, value in cell.as_dict().items():
        if key in metrics.cell and str(metrics.cell[key]) != str(value):
            raise DataError(f"{path}: its 'cell' says {key}={metrics.cell[key]!r} but the file lives in the "
                            f"folder of {key}={value!r}; it was copied or moved by hand — rerun this "
                            f"cell's evaluation.")
    return cell


def read_task_meta(files: Iterable[str | Path]) -> dict[str, TaskMeta]:
    """Task name -> its meta.json."""
    metas = (TaskMeta.read(path) for path in files)
    return {meta.task: meta for meta in metas}


def read_manifests(files: Iterable[str | Path]) -> dict[str, ModelManifest]:
    """Model name -> its manifest.json."""
    manifests = (ModelManifest.read(path) for path in files)
    return {manifest.name: manifest for manifest in manifests}


def read_train_metrics(files: Iterable[str | Path]) -> dict[str, TrainMetrics]:
    """Variant path -> its train_metrics.json."""
    out = {}
    for path in files:
        path = Path(path)
        try:
            variant = variant_from_path(str(path))
        except ValueError:
            raise DataError(f"{path}: not inside a variant folder like "
                            f"results/<study>/train/<model>/<method>/r<rank>/<train_task>/seed<seed>/.") from None
        out[variant.path] = TrainMetrics.read(path)
    return out


# ---------------------------------------------------------------------------- one row


def _number(value) -> float | None:
    return value if finite(value) else None


def _per_1k(seconds_per_sample, hourly) -> float | None:
    seconds_per_sample = _number(seconds_per_sample)
    if seconds_per_sample is None or hourly is None:
        return None
    return seconds_per_sample * 1000.0 / 3600.0 * hourly


def cell_row(metrics: CellMetrics, path: Path, *, train: TrainMetrics | None, task_meta: dict[str, TaskMeta],
             manifests: dict[str, ModelManifest], cost: dict) -> dict:
    """One matrix row from a cell's metrics.json (and its variant's training metrics)."""
    cell = _check_cell(metrics, path)
    variant = cell.variant
    headline, latency, generation, provenance = metrics.headline, metrics.latency, metrics.generation, \
        metrics.provenance
    # A model behind an endpoint (engine openai) has no folder and no manifest.
    endpoint = generation.engine == "openai"
    manifest = None if endpoint else _need(manifests, variant.model, path, "model manifest", "manifest.json")
    eval_meta = _need(task_meta, cell.eval_task, path, "task meta", "meta.json")
    train_meta = (_need(task_meta, variant.train_task, path, "task meta", "meta.json")
                  if variant.train_task != NO_TASK else None)
    device = generation.hardware   # the device the generation ran on, with the GPU's name where known
    n = metrics.n

    row: dict[str, Any] = {
        "model": variant.model, "method": variant.method, "rank": variant.rank,
        "train_task": variant.train_task, "seed": variant.seed, "eval_task": cell.eval_task,
        "label": variant.label, "cell": cell.path,
        "task_kind": metrics.task_kind,
        "model_params": manifest.params if manifest else None,
        "n": n, "n_failed": generation.failed or 0, "headline_metric": headline.name, "headline": headline.value,
        "headline_ci_low": headline.ci_low, "headline_ci_high": headline.ci_high,
        "confidence": headline.confidence,
        "higher_is_better": headline.higher_is_better,
    }
    row.update(grading_columns(metrics))
    for name, value in metrics.metrics.items():
        row[METRIC_PREFIX + name] = value

    row.update({
        "output_tokens_mean": latency.output_tokens_mean,
        "output_tokens_ci_low": latency.output_tokens_ci_low, "output_tokens_ci_high": latency.output_tokens_ci_high,
        "input_tokens_mean": latency.input_tokens_mean,
        "output_tokens_timed_mean": latency.output_tokens_timed_mean,
        "hit_limit": metrics.hit_limit,
        "hit_limit_pct": metrics.hit_limit_pct,
        "timed_mismatches": latency.timed_mismatches if latency.n_timed else None,
        "n_timed": latency.n_timed,
        "timing_rounds": latency.rounds if latency.n_timed else None,
        "latency_mean_s": latency.mean_s, "latency_mean_ci_low": latency.mean_ci_low_s,
        "latency_mean_ci_high": latency.mean_ci_high_s, "latency_median_s": latency.median_s,
        "latency_round_medians_s": (" ".join(f"{m:.6g}" for m in latency.round_medians_s)
                                    if latency.round_medians_s else None),
        "latency_p95_s": latency.p95_s, "ttft_mean_s": latency.ttft_mean_s,
        "ttft_mean_ci_low": latency.ttft_mean_ci_low_s, "ttft_mean_ci_high": latency.ttft_mean_ci_high_s,
        "ttft_median_s": latency.ttft_median_s, "tpot_mean_s": latency.tpot_mean_s,
        "tpot_s": latency.tpot_s, "tpot_ci_low": latency.tpot_ci_low_s, "tpot_ci_high": latency.tpot_ci_high_s,
        "eval_wall_time_s": generation.wall_s,
        "eval_samples_per_s": generation.samples_per_s,
    })

    # Inference is priced by the device the cell was timed on (the quality pass's where untimed),
    # or by the model's own hour_usd (cost settings' model_hour_usd) where the study sets one.
    kind = device_kind(latency.device or device)
    override = (cost.get("model_hour_usd") or {}).get(variant.model)
    hourly = override if override is not None else cost[f"{kind}_hour_usd"]
    row["cost_device_kind"] = kind
    row["cost_hourly_usd"] = hourly
    row["cost_per_1k_usd"] = _per_1k(latency.mean_s, hourly)
    rate = _number(generation.samples_per_s)
    row["cost_per_1k_batched_usd"] = _per_1k(1.0 / rate, hourly) if rate else None
    if endpoint:
        row.update(endpoint_cost(generation, (cost.get("endpoint_prices") or {}).get(variant.model)))
    api = cost["api"]
    if api:
        tokens_in = _number(latency.input_tokens_mean)
        tokens_out = _number(latency.output_tokens_mean)
        row["api_name"] = api["name"]
        row["api_cost_per_1k_usd"] = (
            1000.0 * (tokens_in * api["input_per_million_usd"] + tokens_out * api["output_per_million_usd"]) / 1e6
            if tokens_in is not None and tokens_out is not None else None)

    if variant.is_trained:
        if train is None:
            raise DataError(f"{path}: the cell's variant {variant.path} has no train_metrics.json among the "
                            f"inputs; run its training (snakemake --cores all results/<study>/train/"
                            f"{variant.path}/train_metrics.json, with the study's --configfile).")
        train_hourly = cost[f"{device_kind(train.hardware)}_hour_usd"]
        row.update({
            "train_wall_time_s": train.wall_time_s,
            "train_tokens_per_s": train.tokens_per_s,
            "train_peak_memory_mb": train.peak_memory_mb,
            "train_cost_usd": train.wall_time_s / 3600.0 * train_hourly,
            "trainable_params": train.trainable_params, "total_params": train.total_params,
            "trainable_pct": 100.0 * train.trainable_params / train.total_params if train.total_params else None,
            "train_steps": train.steps, "train_epochs": train.epochs,
            "train_tokens": train.train_tokens, "learning_rate": train.learning_rate,
            "train_final_loss": train.final_loss,
            "heldout_loss_before": train.heldout_loss_before,
            "heldout_loss_after": train.heldout_loss_after,
            "train_truncated_examples": train.truncated_examples,
            "train_peak_memory_kind": train.peak_memory_kind,
        })

    row.update({
        "device": device_name(device), "engine": generation.engine, "timing_engine": latency.engine,
        "precision": generation.precision,
        "batch_size": generation.batch_size, "max_new_tokens": generation.max_new_tokens,
        "enable_thinking": generation.enable_thinking,
        "merge_lora": generation.merge_lora if variant.method == "lora" else None,
        "model_revision": manifest.resolved_revision if manifest else None,
        "eval_data_fingerprint": eval_meta.eval_fingerprint,
        "train_data_fingerprint": train_meta.train_fingerprint if train_meta else None,
        "git_commit": provenance["git_commit"], "git_dirty": provenance["git_dirty"],
        "config_hash": provenance["config_hash"],
    })
    return row


def endpoint_cost(generation, prices: dict | None) -> dict:
    """An endpoint cell is billed by tokens, not by the hour: its cost per 1,000 samples is the mean
    billed input and output tokens (the responses' usage, failed samples excluded) times the
    entry's prices per million, the same at batch size 1 and batched."""
    usage = generation.usage or {}
    samples = usage.get("samples") or 0
    per_1k = None
    if prices and samples:
        per_1k = 1000.0 * (usage["input_tokens"] * prices["input_per_million_usd"]
                           + usage["output_tokens"] * prices["output_per_million_usd"]) / 1e6 / samples
    return {"cost_device_kind": "api", "cost_hourly_usd": None, "cost_per_1k_usd": per_1k,
            "cost_per_1k_batched_usd": per_1k}


def grading_columns(metrics: CellMetrics) -> dict:
    """The headline under each reading of the answers (lenient, strict) with its interval, the
    reading the ``headline`` column uses, and the format-compliance rate with its interval."""
    readings = metrics.readings or {}
    row = {"grading": metrics.grading}
    for reading in ("lenient", "strict"):
        scored = readings.get(reading) or {}
        low, high = (scored.get("ci") or {}).get(metrics.headline.name) or (None, None)
        row[f"headline_{reading}"] = (scored.get("metrics") or {}).get(metrics.headline.name)
        row[f"headline_{reading}_ci_low"], row[f"headline_{reading}_ci_high"] = low, high
    row["format_rate"] = metrics.format_rate
    row["format_rate_ci_low"], row["format_rate_ci_high"] = metrics.format_rate_ci or (None, None)
    return row


def _need(records: dict, name: str, path: Path, what: str, file: str):
    if name not in records:
        raise DataError(f"{path}: no {what} for {name!r} among the inputs ({file}); the aggregation needs "
                        f"every model's manifest and every task's meta.json — run it through Snakemake "
                        f"(snakemake --cores all --forcerun aggregate_matrix, with the study's --configfile).")
    return records[name]


# ---------------------------------------------------------------------------- the table


def matrix_header(rows: list[dict], with_api: bool) -> list[str]:
    metric_names = sorted({k for row in rows for k in row if k.startswith(METRIC_PREFIX)})
    return (IDENTITY_COLUMNS + QUALITY_COLUMNS + metric_names + TOKEN_COLUMNS + TIMING_COLUMNS
            + TRAINING_COLUMNS + COST_COLUMNS + (API_COLUMNS if with_api else []) + PROVENANCE_COLUMNS)


def format_value(value) -> str:
    """One CSV field: empty for missing, repr-exact floats (stable across runs), True/False."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return repr(value)
    if isinstance(value, (dict, list)):
        return escape_cell(json.dumps(value, sort_keys=True))
    return escape_cell(str(value))


# A spreadsheet reads a cell that starts with one of these as a formula (CSV injection): such
# a text cell is written with a leading apostrophe, as spreadsheets themselves do, and
# read_matrix takes it off again. A text that starts with an apostrophe gets one more, so
# every text reads back as written.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def escape_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unescape_cell(value):
    return value[1:] if isinstance(value, str) and value.startswith("'") else value


def to_csv(rows: list[dict], header: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([format_value(row.get(column)) for column in header])
    return buffer.getvalue()


def build_rows(metrics_files, train_metrics_files, task_meta_files, model_manifests, cost) -> list[dict]:
    task_meta = read_task_meta(task_meta_files)
    manifests = read_manifests(model_manifests)
    train = read_train_metrics(train_metrics_files)
    rows, seen = [], {}
    for path in metrics_files:
        path = Path(path)
        metrics = CellMetrics.read(path)
        cell = _check_cell(metrics, path)
        if cell in seen:
            raise DataError(f"{path}: the cell {cell.path} is listed twice (also {seen[cell]}).")
        seen[cell] = path
        rows.append((cell, cell_row(metrics, path, train=train.get(cell.variant.path), task_meta=task_meta,
                                    manifests=manifests, cost=cost)))
    rows.sort(key=lambda item: item[0])
    return [row for _, row in rows]


def aggregate_matrix(metrics_files, train_metrics_files, task_meta_files, model_manifests, cost, matrix_file,
                     *, log=None) -> list[dict]:
    """Write results/matrix.csv: one row per cell, columns in a fixed order (see the module doc)."""
    import logging

    from ftmatrix.io import write_text

    log = log or logging.getLogger("ftmatrix")
    rows = build_rows(metrics_files, train_metrics_files, task_meta_files, model_manifests, cost)
    if not rows:
        raise DataError(f"{matrix_file}: no cells to aggregate; the study's grid is empty — check models, "
                        f"tasks and methods in the config.")
    header = matrix_header(rows, with_api=bool(cost["api"]))
    write_text(matrix_file, to_csv(rows, header))
    log.info("matrix: %d cells × %d columns -> %s", len(rows), len(header), matrix_file)
    return rows


def read_matrix(path: str | Path):
    """results/matrix.csv as a pandas DataFrame (missing values as NaN/None)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no matrix; run `snakemake results/matrix.csv` first.")
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"cell": str, "label": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc}); rerun `snakemake --forcerun aggregate_matrix`.") \
            from None
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column].dtype):
            frame[column] = frame[column].map(unescape_cell)
    missing = [c for c in IDENTITY_COLUMNS + QUALITY_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; it is not a matrix written by this "
                        f"version — rerun `snakemake --forcerun aggregate_matrix`.")
    return frame
