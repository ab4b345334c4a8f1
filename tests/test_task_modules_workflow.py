"""A study adds a task kind of its own: README's worked example, written into a folder outside
the package, goes through Snakemake to the matrix and the journal with no other edit; an unknown
kind stops the run before any job starts."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftmatrix import io
from tests.toy_task import README_ENTRIES, write_kind, write_rows

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def snakemake(root, workdir, study, *targets, dry_run=False, timeout=1800):
    command = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(workdir),
               "--cores", "2", *(["-n"] if dry_run else []), *targets, "--configfile", str(study)]
    # Its own process group, so a timeout stops Snakemake's jobs too, not just Snakemake.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, stdout + stderr


def toy_study(tmp_path) -> dict:
    """README's entries (task_modules and the yesno task) with its paths pointed at tmp_path, and a
    tiny model built from a small corpus: a study a user could write, sized to run in minutes."""
    kinds = tmp_path / "my-kinds"
    write_kind(kinds)
    entries = yaml.safe_load(yaml.safe_dump(README_ENTRIES))
    assert entries["task_modules"] == ["my-kinds"]
    # relative to the project root, as README says, while Snakemake works in another folder
    entries["task_modules"] = [os.path.relpath(kinds, ROOT)]
    task = entries["tasks"][0]
    task["source"]["train"] = str(write_rows(tmp_path / "my-data" / "yesno-train.jsonl", 200))
    task["source"]["eval"] = str(write_rows(tmp_path / "my-data" / "yesno-eval.jsonl", 8, offset=1000))
    task.update(train_size=24, eval_size=8)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"Is {a} greater than {b}? {'yes' if a > b else 'no'}.\n"
                              for a in range(1, 30) for b in range(1, 12)), encoding="utf-8")
    return {
        "study": "yesno-toy",
        "description": "A task kind of the study's own, end to end.",
        "methods": ["base", "full"],
        **entries,
        "models": [{"name": "toy-model", "source": "build", "params_b": 0.001,
                    "build": {"tokenizer": {"vocab_size": 300}, "corpus": str(corpus), "hidden_size": 32,
                              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                              "head_dim": 16, "intermediate_size": 64, "pretrain_steps": 0}}],
        "train": {"max_steps": 2, "per_device_batch_size": 4, "gradient_accumulation_steps": 1,
                  "max_length": 128, "heldout_size": 4, "save_steps": 2, "save_total_limit": 1,
                  "logging_steps": 1},
        "evaluate": {"batch_size": 8, "latency_samples": 2, "warmup": 1},
    }


def write_study(tmp_path, study: dict):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_study_kind_runs_to_the_matrix_and_the_journal(tmp_path, root):
    study = toy_study(tmp_path)
    workdir = tmp_path / "work"
    returncode, output = snakemake(root, workdir, write_study(tmp_path, study))
    assert returncode == 0, output[-6000:]

    results = workdir / "results" / "yesno-toy"
    with open(results / "matrix.csv", newline="", encoding="utf-8") as fh:
        matrix = list(csv.DictReader(fh))
    assert sorted(r["method"] for r in matrix) == ["base", "full"]
    assert {(r["eval_task"], r["task_kind"], r["headline_metric"]) for r in matrix} == {("yesno", "yesno", "accuracy")}
    assert all(r["n"] == "8" and r["metric_answer_rate"] != "" for r in matrix)
    for row in matrix:
        assert 0.0 <= float(row["headline"]) <= 100.0
    full = next(results.glob("eval/toy-model/full/r0/yesno/seed0/yesno/predictions.jsonl"))
    assert all("correct" in p["scores"] for p in io.read_jsonl(full))
    # the journal's process resolved the kind's display names from the study's folder
    html = (results / "journal" / "journal.html").read_text(encoding="utf-8")
    assert "yes/no accuracy" in html and "answered yes or no" in html
    assert (results / "journal" / "journal.pdf").read_bytes().startswith(b"%PDF")


def test_an_unknown_kind_stops_the_run_before_any_job(tmp_path, root):
    study = toy_study(tmp_path)
    study["task_modules"] = []
    returncode, output = snakemake(root, tmp_path / "work", write_study(tmp_path, study), dry_run=True,
                                   timeout=300)
    assert returncode != 0
    assert "tasks[0].kind is 'yesno', which no task module declares" in output and "task_modules" in output
    assert "Job stats" not in output and not (tmp_path / "work" / "results").exists()
    # with its folder, the same study plans every job
    returncode, output = snakemake(root, tmp_path / "work", write_study(tmp_path, toy_study(tmp_path)),
                                   dry_run=True, timeout=300)
    assert returncode == 0 and "prepare_task" in output and "journal_pdf" in output, output[-3000:]
