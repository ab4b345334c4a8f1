"""The evaluation stage through Snakemake: the real-data study (real ARC, OpenMathInstruct-2 and
SQuAD v2 rows, a tiny Qwen3 on the real Qwen3 tokenizer) evaluates every cell to metrics.json."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import ftmatrix.config
import ftmatrix.grid
from ftmatrix import io


@pytest.mark.slow
def test_real_data_study_evaluates_every_cell(tmp_path, root, shared_data, qwen_tokenizer_dir):
    study = root / "studies" / "real-data.yaml"
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(tmp_path),
                 "--cores", "2", "evaluate", "--configfile", str(study)]
    # Its own process group, so a timeout stops Snakemake's jobs too, not just Snakemake.
    proc = subprocess.Popen(snakemake, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=3600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-6000:]

    config = ftmatrix.config.load(root / "config.yaml", [study])
    cells = ftmatrix.grid.cells(config)
    assert len(cells) == 21                          # base, full and LoRA r4 on three tasks, × three eval tasks
    headlines = {"arc": "macro_f1", "openmath": "exact_match", "squad_v2": "f1"}
    for cell in cells:
        folder = tmp_path / "results" / "real-data" / "eval" / cell.path
        task = ftmatrix.config.task_entry(config, cell.eval_task)
        metrics = io.read_json(folder / "metrics.json")
        generations = io.read_jsonl(folder / "generations.jsonl")
        predictions = io.read_jsonl(folder / "predictions.jsonl")
        eval_ids = [r["id"] for r in io.read_jsonl(tmp_path / "data" / "real-data" / "tasks" / cell.eval_task / "eval.jsonl")]
        assert [r["id"] for r in generations] == [r["id"] for r in predictions] == eval_ids
        assert metrics["cell"] == cell.as_dict()
        assert metrics["n"] == len(eval_ids) == task["eval_size"]
        head = metrics["headline"]
        assert head["name"] == headlines[cell.eval_task] and head["resamples"] >= 1000
        assert head["value"] is not None and head["ci_low"] <= head["value"] <= head["ci_high"]
        assert metrics["latency"]["n_timed"] == config["evaluate"]["latency_samples"]
        assert metrics["generation"]["max_new_tokens"] == task["max_new_tokens"]
        assert metrics["generation"]["enable_thinking"] is False
        assert metrics["generation"]["method"] == cell.variant.method
        if cell.variant.method == "lora":
            assert metrics["generation"]["merge_lora"] is True
        assert all(r["output_tokens"] <= task["max_new_tokens"] for r in generations)
        assert all(r["prompt"].startswith("<|im_start|>user\n") for r in generations)   # the real Qwen3 template
        assert not list(folder.glob("*.partial*"))
